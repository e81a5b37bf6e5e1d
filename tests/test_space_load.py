"""gunn_search.space.load: finding and reading space files (bundled names too), overrides; and the
bundled spaces themselves."""

from __future__ import annotations

import pytest
import yaml

from gunn_search.space import (bundled_spaces, example_configs, fingerprint, load_space,
                               parse_space, resolve_space_path, trial_config, with_overrides)
from gunn_search.space import distributions as dist
from gunn_search.space.load import BUNDLED_DIR
from tests.space_helpers import (BASE, BUNDLED, TINY, assert_valid_sample, inside, one_line_error,
                                 patched, write)
from trainers.config import dump_config, load_config, parse_config
from trainers.model.spec import gunn15_spec, gunn24_spec

# --- finding a space ------------------------------------------------------------------------------


def test_bundled_list_and_resolution(tmp_path, monkeypatch):
    assert bundled_spaces() == BUNDLED
    by_stem = resolve_space_path("cifar_gunn15")
    assert by_stem == resolve_space_path("cifar_gunn15.yaml") == BUNDLED_DIR / "cifar_gunn15.yaml"
    assert by_stem.is_file()
    # An existing file wins; without `name` the experiment is named after the file.
    p = write(tmp_path, BASE, "my_space.yaml")
    assert resolve_space_path(str(p)) == p and resolve_space_path(p) == p
    assert load_space(p).name == "my_space"
    assert load_space(write(tmp_path, {**BASE, "name": "named"}, "x.yaml")).name == "named"
    monkeypatch.chdir(tmp_path)
    assert load_space("my_space.yaml").name == "my_space"
    write(tmp_path, TINY, "smoke.yaml")  # a file in the working directory shadows a bundled name
    assert load_space("smoke.yaml").searched() == {}
    err = one_line_error(resolve_space_path, "no_such_space")
    assert str(err).startswith("no_such_space: no such file, and no bundled space of that name "
                               "(bundled: cifar100_gunn15.yaml, ")
    assert str(one_line_error(resolve_space_path, "sub/none.yaml")) == "sub/none.yaml: no such file"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_space_loads(name):
    space = load_space(name)
    assert space.name == name.removesuffix(".yaml")
    assert space.source.endswith(name) and space.searched()
    assert space.base.data.split == "search" and space.budget.max_params
    for v in example_configs(space, n=3):
        assert_valid_sample(space, v)
    # Its YAML mapping is a space again, the same one.
    again = parse_space(yaml.safe_load(yaml.safe_dump(space.data)), "again")
    assert fingerprint(again) == fingerprint(space) and again.dims == space.dims


def point15(N, P, K, M, *, lr=0.1, wd=1e-4, **extra):
    """The paper's hyperparameters with stages (N, P, K, M) as dotted config paths."""
    p = {"optim.lr": lr, "optim.weight_decay": wd, "batch_size": 64, "optim.momentum": 0.9,
         "model.family": "gunn", "model.head_channels": N[-1], **extra}
    for i, stage in enumerate(zip(N, P, K, M)):
        p.update({f"model.stages.{i}.{d}": v for d, v in zip("NPKM", stage)})
    return p


GUNN15 = point15((240, 300, 360), (20, 25, 30), (2, 2, 2), (1, 1, 1))
GUNN24 = point15((720, 900, 1080), (20, 25, 30), (3, 3, 3), (2, 2, 2))


def test_the_papers_point_lies_inside_each_gunn15_space():
    for name, classes in (("cifar_gunn15", 10), ("cifar100_gunn15", 100), ("gunn_vs_sunn", 10)):
        space = load_space(name)
        dims = space.dims
        for i, P in enumerate((20, 25, 30)):  # n = 12 in every stage
            assert dist.allows(dims[f"model.stages.{i}.n"], 12), (name, i)
            assert dist.allows(dims[f"model.stages.{i}.P"], P), (name, i)
            assert 2 in space.values_at(f"model.stages.{i}.K")  # searched or fixed
            assert 1 in space.values_at(f"model.stages.{i}.M")
        assert dist.allows(dims["optim.lr"], 0.1) and dist.allows(dims["optim.weight_decay"], 1e-4)
        assert inside(space, GUNN15), name
        values = {k: v for k, v in GUNN15.items() if k in space.config_paths}
        assert trial_config(space, values).model.network_spec(classes) == gunn15_spec(classes)
    sunn = load_space("gunn_vs_sunn")
    assert inside(sunn, {**GUNN15, "model.family": "sunn"})
    assert not inside(load_space("cifar_gunn15"), {**GUNN15, "model.family": "sunn"})


def test_points_just_outside_a_gunn15_space():
    space = load_space("cifar_gunn15")
    assert not inside(space, {**GUNN15, "model.stages.0.N": 200})  # n = 10 is not allowed
    assert not inside(space, {**GUNN15, "model.stages.0.N": 250})  # not divisible by P = 20
    assert not inside(space, {**GUNN15, "optim.lr": 0.5})
    assert not inside(space, {**GUNN15, "optim.weight_decay": 1e-3})
    assert not inside(space, {**GUNN15, "model.stages.0.K": 4})
    assert not inside(space, {**GUNN15, "optim.momentum": 0.8})  # not searched here
    assert not inside(space, {**GUNN15, "model.stages.3.N": 360})


def test_the_papers_point_lies_inside_the_gunn24_space():
    space = load_space("cifar_gunn24")
    assert space.stage_forms == ("N", "N", "N")
    for i, (N, P) in enumerate(((720, 20), (900, 25), (1080, 30))):
        for dim, v in (("N", N), ("P", P), ("K", 3), ("M", 2)):
            assert dist.allows(space.dims[f"model.stages.{i}.{dim}"], v), (i, dim)
    assert inside(space, GUNN24)
    values = {k: v for k, v in GUNN24.items() if k in space.config_paths}
    assert trial_config(space, values).model.network_spec(10) == gunn24_spec(10)


def test_gunn_vs_sunn_includes_both_families_and_smoke_searches_momentum():
    assert load_space("gunn_vs_sunn").dims["model.family"] == dist.Choice(("gunn", "sunn"))
    smoke = load_space("smoke")
    assert dist.is_searched(smoke.dims["optim.momentum"])
    assert {"optim.lr", "optim.weight_decay", "optim.momentum"} <= set(smoke.searched())
    assert smoke.base.data.name == "digits" and not smoke.base.data.download


# --- reading a file -------------------------------------------------------------------------------

def test_numbers_yaml_reads_as_strings_are_accepted_for_floats(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string; float keys take it as the number it is.
    text = ("data: {name: digits}\nmodel: {stages: [{N: 8, P: 2}]}\n"
            "optim: {weight_decay: 1e-4, lr: {low: 1e-3, high: 1e-1, log: true}}\n")
    space = load_space(write(tmp_path, text))
    assert space.base.optim.weight_decay == 1e-4
    assert space.dims["optim.lr"] == dist.Range(1e-3, 1e-1, log=True)


def test_an_exported_config_file_is_a_space(tmp_path):
    from gunn_search.results.export import export_config

    space = load_space("smoke")
    cfg = export_config(trial_config(space, example_configs(space, n=1)[0]), "search-id", "trial-id",
                        epochs=7, experiment="smoke", tracking_uri="sqlite:///mlflow.db")
    path = tmp_path / "best.yaml"
    dump_config(cfg, path)
    one = load_space(path)
    assert one.base == cfg == load_config(path)
    assert one.searched() == {} and one.search.num_samples == 1 and one.name == "best"
    assert trial_config(one, {}) == cfg.model_copy(update={"tracking": None})


BAD_FILES = [
    # (id, file text, field or line named (None: none), problem fragment)
    ("python_tag", '!!python/object/apply:os.system ["echo hi"]\n', "line 1", "unsupported YAML tag"),
    ("python_tag_nested", "data: {name: digits}\nmodel: !!python/object/apply:os.system [ls]\n",
     "line 2", "unsupported YAML tag"),
    ("malformed", "data: {name: digits\nmodel: [1, 2\n", "line", "malformed YAML"),
    ("bad_indent", "data:\n  name: digits\n model: 1\n", "line 3", "malformed YAML"),
    ("empty_file", "", None, "empty file"),
    ("comment_only", "# nothing\n", None, "empty file"),
    ("top_level_list", "- 1\n- 2\n", None, "mapping of settings at the top level"),
    ("top_level_scalar", "cifar10\n", None, "mapping of settings at the top level"),
    ("old_format", "dataset: {name: digits}\nmodel: {stages: [{N: 8, P: 2}]}\n", None,
     "unknown key 'dataset' (the section is now `data`"),
    ("bad_value", "model: {stages: [{N: 8, P: 2}]}\noptim: {momentum: {choice: [0.9, 1.5]}}\n",
     "optim.momentum", "choice 1.5: must be < 1.0"),
    ("n_and_N", "model: {stages: [{N: 8, n: 4, P: 2}]}\n", "model.stages.0", "not both"),
]


@pytest.mark.parametrize("text,field,fragment", [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_a_one_line_error_naming_it(tmp_path, text, field, fragment):
    path = write(tmp_path, text)
    msg = str(one_line_error(load_space, path))
    assert msg.startswith(f"{path}: "), msg
    assert fragment in msg, msg
    if field is not None:
        assert msg.startswith(f"{path}: {field}"), msg


def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert str(one_line_error(load_space, missing)) == f"{missing}: no such file"
    assert str(one_line_error(load_space, tmp_path)) == f"{tmp_path}: not a file"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    assert str(one_line_error(load_space, bad)).startswith(f"{bad}: cannot read")


# --- overrides ------------------------------------------------------------------------------------

def test_with_overrides_sets_dotted_paths_and_revalidates(tmp_path):
    space = load_space(write(tmp_path, BASE))
    fp = fingerprint(space)
    over = with_overrides(space, {"epochs": 6, "search.num_samples": 3, "data.data_dir": "/data",
                                  "resources.gpus_per_trial": 1, "optim.momentum": 0.8})
    assert over.base.epochs == 6 and over.search.num_samples == 3
    assert over.base.data.data_dir == "/data" and over.resources.gpus_per_trial == 1
    assert over.base.optim.momentum == 0.8
    assert over.source == space.source and over.name == space.name == "space"
    assert over.dims == space.dims
    # The original is unchanged.
    assert space.base.epochs == 4 and fingerprint(space) == fp
    # A value replaces a distribution; a distribution may replace a value.
    fixed = with_overrides(space, {"optim.lr": 0.05, "optim.momentum": {"low": 0.8, "high": 0.9}})
    assert "optim.lr" not in fixed.dims and fixed.base.optim.lr == 0.05
    assert fixed.dims["optim.momentum"] == dist.Range(0.8, 0.9)
    # Inside a stage, by its index.
    staged = with_overrides(space, {"model.stages.1.K": 3, "model.stages.0.n": {"choice": [4, 8]}})
    assert staged.base.model.stages[1].K == 3
    assert staged.dims["model.stages.0.n"] == dist.Choice((4, 8))
    assert with_overrides(space, {"data.data_dir": "/elsewhere"}).dims == space.dims
    assert fingerprint(with_overrides(space, {"data.data_dir": "/elsewhere"})) == fp


@pytest.mark.parametrize("overrides,message", [
    ({"epochs": 0}, "command line: epochs: must be >= 1 (got 0)"),
    ({"search.grace_period": 9}, "command line: search.grace_period: must be <= epochs (4) (got 9)"),
    ({"epochs": 1, "search.grace_period": 1, "schedule.warmup_epochs": {"low": 0, "high": 1}},
     "command line: schedule.warmup_epochs: must be < epochs in every sample"),
    ({"budget.max_params": 10}, "command line: budget.max_params: no configuration in the space fits"),
    ({"optim.lrr": 0.1}, "command line: optim: unknown key 'lrr' (did you mean 'lr'?)"),
    ({"model.stages.0.N": 8}, "command line: model.stages.0: set exactly one of N"),
    ({"model.stages.7.K": 2}, "command line: model.stages.7.K: no such setting to override"),
    ({"epochs.max": 2}, "command line: epochs.max: no such setting to override"),
    ({"model.stages.x.K": 2}, "command line: model.stages.x.K: no such setting to override"),
])
def test_bad_overrides_are_one_line_errors(overrides, message):
    space = parse_space(BASE, "f.yaml")
    msg = str(one_line_error(with_overrides, space, overrides))
    assert msg.startswith(message), msg


def test_overrides_of_a_one_point_space():
    space = parse_space(TINY, "f.yaml")
    over = with_overrides(space, {"epochs": 5})
    assert over.search.num_samples == 1 and over.base.epochs == 5 and over.searched() == {}
    assert parse_config({k: v for k, v in over.data.items()
                         if k not in ("search", "resources", "budget")}) == over.base


# --- the summary (--dry-run) ----------------------------------------------------------------------

def test_summary_describes_the_space():
    from gunn_search.run.summary import examples, summarize

    space = parse_space(patched(BASE, ("name", "base"), ("budget", {"max_params": 10**6})), "f.yaml")
    text = summarize(space)
    lines = text.splitlines()
    assert lines[0] == "search space 'base' (f.yaml)"
    assert lines[1] == f"  fingerprint {fingerprint(space)[:16]}"
    assert "  stage 0: N = n*P in [4, 16]" in lines
    assert "  stage 1: N among [12, 16, 18]; P among the divisors of N" in lines
    assert "  stage 2: N among [20, 24, 28, 30, 32, 36, 40]; P among the divisors of N" in lines
    assert "searched dimensions (11):" in lines
    assert any(ln.split() == ["optim.lr", "[0.01,", "0.3]", "log-uniform"] for ln in lines)
    assert any(ln.split() == ["batch_size", "{32,", "64}"] for ln in lines)
    assert any(ln.startswith("budget: params <= 1,000,000; smallest configuration: 3,362 params")
               for ln in lines)
    assert any(ln.startswith("training: epochs 4, schedule.kind step, optim.momentum 0.9")
               for ln in lines)
    ex = examples(space, n=3).splitlines()
    assert len(ex) == 3 and all("params=" in ln and "optim.lr=" in ln for ln in ex)


def test_summary_of_a_one_point_space():
    from gunn_search.run.summary import examples, summarize

    text = summarize(parse_space(TINY, "one.yaml"))
    assert "1 trials" in text and "searched dimensions (0):" in text
    assert "optim.lr 0.1" in text and "budget: none" in text
    assert examples(parse_space(TINY, "one.yaml")).strip().startswith("{8,2}  params=")
