"""gunn_search.space.schema: a space file is a gunn-train config whose values may be
distributions, plus the search-only sections name, search, resources and budget."""

from __future__ import annotations

import pytest
import yaml

from gunn_search.space import distributions as dist
from gunn_search.space.distributions import Choice, Range
from gunn_search.space.schema import fingerprint, parse_space
from tests.space_helpers import BASE, SEARCHABLE, TINY, one_line_error, parse, patched
from trainers.config import TrainConfig, parse_config

# --- what a space is ------------------------------------------------------------------------------


def test_base_space():
    space = parse(BASE)
    assert space.stage_forms == ("n", "N", "N")
    assert set(space.dims) == {
        "model.stages.0.n", "model.stages.0.P", "model.stages.0.K",
        "model.stages.1.N", "model.stages.1.P", "model.stages.1.M",
        "model.stages.2.N", "model.stages.2.P",
        "optim.lr", "optim.weight_decay", "batch_size"}
    assert space.dims["model.stages.0.n"] == Choice((2, 4))
    assert space.dims["model.stages.0.P"] == Range(2, 4, integer=True)
    assert space.dims["model.stages.2.N"] == Range(20, 40, step=2, integer=True)
    assert space.dims["optim.lr"] == Range(0.01, 0.3, log=True)
    assert space.dims["optim.weight_decay"] == Choice((0.0, 1e-4, 5e-4))
    assert space.searched() == space.dims  # every dimension here has more than one value
    # The base config: every distribution at one of its values (a valid network).
    assert isinstance(space.base, TrainConfig)
    assert [(s.N, s.P, s.K, s.M) for s in space.base.model.stages] == [
        (4, 2, 1, 1), (12, 2, 1, 1), (20, 4, 1, 1)]
    assert space.base.optim.lr == 0.01 and space.base.batch_size == 32
    assert space.base.data.name == "digits" and space.base.epochs == 4
    # What a sample sets: each stage's N (never n) and the other dimensions.
    assert set(space.config_paths) == (set(space.dims) - {"model.stages.0.n"}) | {"model.stages.0.N"}
    assert space.name is None and space.source == "f.yaml"
    assert space.search.num_samples == 32 and space.search.grace_period == 1
    assert space.budget.max_params is None and space.resources.cpus_per_trial == 1.0
    assert space.values_at("model.stages.1.N") == [12, 16, 18]
    assert space.values_at("optim.momentum") == [0.9]
    assert space.max_epochs == 4


def test_plain_stage_values_are_fixed_dimensions():
    space = parse(patched(TINY, ("model.stages", [{"n": 4, "P": 3, "K": 2}])))
    assert space.dims == {"model.stages.0.n": Choice((4,)), "model.stages.0.P": Choice((3,))}
    assert space.searched() == {} and space.stage_forms == ("n",)
    assert (space.base.model.stages[0].N, space.base.model.stages[0].K) == (12, 2)



@pytest.mark.parametrize("path,value,values", SEARCHABLE, ids=[s[0] for s in SEARCHABLE])
def test_every_config_value_can_be_searched(path, value, values):
    space = parse(patched(TINY, (path, value)))
    assert set(space.searched()) == {path}
    got = space.values_at(path)
    assert got == values and [type(v) for v in got] == [type(v) for v in values]
    assert path in space.config_paths


def test_a_gunn_train_config_is_a_space_of_one_point():
    space = parse(TINY)
    assert space.searched() == {} and space.search.num_samples == 1
    assert space.base == parse_config({k: v for k, v in TINY.items() if k != "search"})
    # A distribution of one value is one point too; num_samples given is kept.
    assert parse(patched(TINY, ("optim.lr", {"choice": [0.05]}))).search.num_samples == 1
    assert parse(patched(TINY, ("optim.lr", {"low": 0.05, "high": 0.05}))).search.num_samples == 1
    assert parse(patched(TINY, ("search.num_samples", 5))).search.num_samples == 5
    assert parse(patched(TINY, ("search.num_samples", 32))).search.num_samples == 32
    # Anything searched: the default, 32.
    assert parse(patched(TINY, ("optim.lr", {"choice": [0.05, 0.1]}))).search.num_samples == 32


def test_an_exported_config_parses_unchanged():
    from gunn_search.results.export import export_config

    cfg = export_config(parse_config({k: v for k, v in TINY.items() if k != "search"}),
                        search_run_id="s1", trial_run_id="t1", epochs=5, experiment="exp",
                        tracking_uri="sqlite:///mlflow.db")
    data = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    assert data["tracking"]["tags"]  # a mapping: never taken for a distribution
    space = parse(data, "exported.yaml")
    assert space.base == cfg and space.base.tracking == cfg.tracking
    assert space.searched() == {} and space.search.num_samples == 1
    assert space.base.epochs == 5


def test_yaml_mapping_round_trips():
    # space.data is the space as a YAML mapping again (what with_overrides edits).
    space = parse(BASE)
    assert space.data["model"]["stages"][0]["n"] == {"choice": [2, 4]}
    assert "N" not in space.data["model"]["stages"][0]
    again = parse_space(yaml.safe_load(yaml.safe_dump(space.data)), "again")
    assert again.dims == space.dims and again.base == space.base
    assert again.stage_forms == space.stage_forms and fingerprint(again) == fingerprint(space)


def test_parse_does_not_change_its_input():
    import copy

    data = copy.deepcopy(BASE)
    parse(data)
    assert data == BASE


# --- bad input: one line, ``file: field: problem`` ------------------------------------------------

BAD = [
    # (id, changes to BASE, field named (None: top level), problem fragment)
    ("unknown_key", [("learning_rate", 0.1)], None, "unknown key 'learning_rate'"),
    ("did_you_mean_top", [("optimm", {"lr": 0.1})], None, "did you mean 'optim'?"),
    ("did_you_mean_nested", [("optim.lrr", 0.1)], "optim", "unknown key 'lrr' (did you mean 'lr'?)"),
    ("did_you_mean_stage", [("model.stages.1.Q", 3)], "model.stages.1", "unknown key 'Q'"),
    ("old_dataset", [("dataset", {"name": "digits"})], None,
     "unknown key 'dataset' (the section is now `data`"),
    ("old_train", [("train", {"epochs": 4})], None, "unknown key 'train' (its keys are now top-level"),
    ("old_lr", [("lr", 0.1)], None, "unknown key 'lr' (now `optim.lr`)"),
    ("old_weight_decay", [("weight_decay", 0.1)], None, "now `optim.weight_decay`"),
    ("unknown_search_key", [("search.num_sample", 3)], "search", "did you mean 'num_samples'?"),
    # distributions where none can be
    ("list_key", [("schedule.milestones", {"choice": [[0.5], [0.7]]})], "schedule.milestones",
     "cannot be searched"),
    ("list_key_range", [("schedule.milestones", {"low": 0.1, "high": 0.5})], "schedule.milestones",
     "cannot be searched"),
    ("section", [("optim", {"choice": [{"lr": 0.1}, {"lr": 0.2}]})], "optim",
     "a section of settings cannot be a distribution"),
    ("section_range", [("data", {"low": 1, "high": 2})], "data", "cannot be a distribution"),
    ("stages", [("model.stages", {"choice": [1, 2]})], "model.stages", "cannot be searched"),
    ("search_section", [("search.num_samples", {"choice": [4, 8]})], "search.num_samples",
     "must be an integer"),
    ("tracking", [("tracking", {"uri": {"choice": ["a", "b"]}})], "tracking.uri", "must be a string"),
    # distributions with values the key rejects
    ("momentum_choice", [("optim.momentum", {"choice": [0.9, 1.5]})], "optim.momentum",
     "choice 1.5: must be < 1.0 (got 1.5)"),
    ("momentum_range", [("optim.momentum", {"low": 0.5, "high": 1.0})], "optim.momentum",
     "high 1.0: must be < 1.0"),
    ("dataset_choice", [("data.name", {"choice": ["cifar10", "imagenet"]})], "data.name",
     "choice 'imagenet': unknown value 'imagenet'"),
    ("family_choice", [("model.family", {"choice": ["gunn", "rnn"]})], "model.family",
     "unknown value 'rnn'"),
    ("stem_channels_zero", [("model.stem_channels", {"choice": [8, 0]})], "model.stem_channels",
     "choice 0: must be >= 1"),
    ("batch_size_range", [("batch_size", {"low": 0, "high": 64})], "batch_size", "low 0: must be >= 1"),
    ("int_key_float_step", [("batch_size", {"low": 16, "high": 64, "step": 1.5})], "batch_size",
     "step of an integer range must be an integer"),
    ("kind_range", [("schedule.kind", {"low": 0, "high": 1})], "schedule.kind",
     "a range needs a numeric key; use {choice: [...]} here"),
    ("bool_range", [("optim.nesterov", {"low": 0, "high": 1})], "optim.nesterov", "numeric key"),
    ("empty_choice", [("optim.lr", {"choice": []})], "optim.lr", "choice must not be empty"),
    ("empty_stage_choice", [("model.stages.0.n", {"choice": []})], "model.stages.0.n",
     "must not be empty"),
    ("duplicate_choice", [("model.stages.0.n", {"choice": [2, 2]})], "model.stages.0.n", "duplicate"),
    ("low_gt_high", [("optim.lr", {"low": 0.3, "high": 0.01})], "optim.lr", "low (0.3) > high (0.01)"),
    ("stage_low_gt_high", [("model.stages.0.P", {"low": 5, "high": 2})], "model.stages.0.P",
     "low (5) > high (2)"),
    ("log_through_zero", [("optim.weight_decay", {"low": 0, "high": 1, "log": True})],
     "optim.weight_decay", "a log range needs low > 0"),
    ("step_mismatch", [("model.stages.0.P", {"low": 2, "high": 5, "step": 2})], "model.stages.0.P",
     "multiple of step"),
    ("misspelt_range_key", [("model.stages.0.P", {"low": 2, "hihg": 4})], "model.stages.0.P",
     "unknown key 'hihg' in a range"),
    ("range_missing_high", [("optim.lr", {"low": 0.1})], "optim.lr", "needs both low and high"),
    ("choice_and_range", [("optim.lr", {"choice": [0.1], "low": 0.1})], "optim.lr",
     "a choice takes no other keys"),
    ("wrong_type", [("epochs", "thirty")], "epochs", "must be an integer"),
    ("list_for_value", [("model.stages.0.K", [1, 2])], "model.stages.0.K", "must be an integer"),
    ("registered_model_choice", [("model", {"name": {"choice": ["gunn15", "bogus"]}})],
     "model.name", "choice 'bogus': unknown model 'bogus'"),
    ("registered_model_or_stages", [("model", {"name": {"choice": ["gunn15", None]}})],
     "model.name", "choice None: give either name"),
    # the stages: n-form (N = n*P) or N-form (P divides N)
    ("no_P_divides_N", [("model.stages.1", {"N": 250, "P": {"choice": [20, 30]}})],
     "model.stages.1.P", "no allowed P divides any allowed N (N in [250], P in [20, 30])"),
    ("unreachable_N_choice", [("model.stages.1.N", {"choice": [12, 13]})], "model.stages.1.N",
     "13 is not divisible by any allowed P (P in [2, 3, 4, 6])"),
    ("useless_P_choice", [("model.stages.1.P", {"choice": [2, 7]})], "model.stages.1.P",
     "7 divides no allowed N (N in [12, 16, 18])"),
    ("fixed_N_not_divisible", [("model.stages.1", {"N": 10, "P": 3})], "model.stages.1.P",
     "no allowed P divides any allowed N"),
    ("both_N_and_n", [("model.stages.0.N", 8)], "model.stages.0", "not both"),
    ("neither_N_nor_n", [("model.stages.0.n", None)], "model.stages.0", "set one of N"),
    ("missing_P", [("model.stages.0.P", None)], "model.stages.0.P", "required key is missing"),
    ("zero_N", [("model.stages.1.N", 0)], "model.stages.1.N", "must be >= 1 (got 0)"),
    ("zero_n", [("model.stages.0.n", {"choice": [0, 2]})], "model.stages.0.n",
     "choice 0: must be >= 1"),
    ("negative_P_choice", [("model.stages.1.P", {"choice": [-2, 2]})], "model.stages.1.P", ">= 1"),
    ("zero_M_low", [("model.stages.1.M", {"low": 0, "high": 2})], "model.stages.1.M",
     "low 0: must be >= 1"),
    ("float_stage_range", [("model.stages.0.P", {"low": 2.5, "high": 4})], "model.stages.0.P",
     "must be an integer"),
    ("huge_range", [("model.stages.0.P", {"low": 1, "high": 10000})], "model.stages.0.P",
     "has more than 4096 values"),
    ("stage_not_mapping", [("model.stages.0", 5)], "model.stages.0", "must be a mapping"),
    ("no_stages", [("model.stages", [])], "model.stages", "must not be empty"),
    ("no_model", [("model", None)], "model", "required key is missing"),
    # cross-field rules and the search's own sections
    ("warmup_range_reaches_epochs", [("schedule", {"warmup_epochs": {"low": 0, "high": 4}})],
     "schedule.warmup_epochs", "must be < epochs in every sample (largest warm-up 4, fewest epochs 4)"),
    ("epochs_choice_below_warmup", [("schedule", {"warmup_epochs": 2}), ("epochs", {"choice": [4, 2]})],
     "schedule.warmup_epochs", "fewest epochs 2"),
    ("warmup_fixed", [("schedule", {"warmup_epochs": 4})], None, "schedule.warmup_epochs (4.0) must be "
     "less than epochs (4)"),
    ("split_final", [("data.split", "final")], "data.split", "use split: search"),
    ("split_choice", [("data.split", {"choice": ["search", "final"]})], "data.split",
     "use split: search"),
    ("grace_gt_epochs", [("search.grace_period", 10)], "search.grace_period", "must be <= epochs (4)"),
    ("zero_samples", [("search.num_samples", 0)], "search.num_samples", "must be >= 1 (got 0)"),
    ("reduction_factor", [("search.reduction_factor", 1)], "search.reduction_factor", ">= 2"),
    ("unknown_metric", [("search.metric", "loss")], "search.metric", "unknown value 'loss'"),
    ("zero_cpus", [("resources.cpus_per_trial", 0)], "resources.cpus_per_trial", "> 0"),
    ("empty_name", [("name", "")], "name", "must not be empty"),
    ("val_fraction", [("data.val_fraction", 1.5)], "data.val_fraction", "(got 1.5)"),
    ("section_not_mapping", [("data", "digits")], "data", "must be a mapping"),
    ("budget_negative", [("budget", {"max_params": -1})], "budget.max_params", ">= 1"),
    ("budget_unknown", [("budget", {"max_param": 10})], "budget", "did you mean 'max_params'?"),
    ("budget_params", [("budget", {"max_params": 1000})], "budget.max_params",
     "no configuration in the space fits: the smallest has 3,362 params > 1,000"),
    ("budget_macs", [("budget", {"max_macs": 1000})], "budget.max_macs",
     "no configuration in the space fits"),
]


@pytest.mark.parametrize("changes,field,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_space_is_a_one_line_error_naming_file_and_field(changes, field, fragment):
    err = one_line_error(parse_space, patched(BASE, *changes), "f.yaml")
    msg = str(err)
    assert fragment in msg, msg
    assert err.file == "f.yaml"
    assert err.field == field, msg
    assert msg == ": ".join(p for p in ("f.yaml", field, err.problem) if p)


# --- ASHA's first rung ----------------------------------------------------------------------------

@pytest.mark.parametrize("changes,grace", [
    ([("epochs", 30)], 15),                                   # step [0.5, 0.75]: epoch 15 of 30
    ([("epochs", 12)], 6),
    ([("epochs", 9)], 5),                                     # 4.5 -> epoch 5 is the first at lr/10
    ([("epochs", 10), ("schedule", {"milestones": [0.3, 0.6]})], 3),
    ([("epochs", {"choice": [8, 12]})], 6),                   # the latest drop over the samples
    ([("epochs", 30), ("schedule", {"kind": "cosine"})], 15),  # cosine: half of the epochs
    ([("epochs", 9), ("schedule", {"kind": "cosine"})], 5),
    ([("epochs", 1), ("schedule", {"kind": "cosine"})], 1),
    ([("epochs", 12), ("schedule", {"kind": "constant"})], 6),  # not measured: as cosine
    ([("epochs", 30), ("search.grace_period", 4)], 4),        # set in the file: kept
])
def test_without_branches_grace_period_defaults_to_the_first_epoch_after_the_lr_drop(changes,
                                                                                    grace):
    # Without annealing branches a rung compares the trial's own val_acc: wait for the drop.
    space = parse(patched(BASE, ("search.grace_period", None), ("search.branch_epochs", 0),
                          *changes))
    assert space.search.grace_period == grace


@pytest.mark.parametrize("changes,grace,branch", [
    # a step schedule: no branch, the first rung at the lr drop (chosen on the simulator)
    ([("epochs", 12)], 6, 0.0),
    ([("epochs", 30)], 15, 0.0),                              # the CIFAR spaces
    ([("epochs", 4)], 2, 0.0),
    # other schedules: a branch, and the first rung, of a sixth of the epochs
    ([("epochs", 30), ("schedule", {"kind": "cosine"})], 5, 5.0),
    ([("epochs", 4), ("schedule", {"kind": "cosine"})], 1, 0.67),
    ([("epochs", 30), ("search.branch_epochs", 1.5)], 5, 1.5),  # set in the file: kept
    ([("epochs", 30), ("search.scheduler", "fifo")], 15, 0.0),  # fifo: no rungs, no branches
    # two objectives: no branch, so the first rung is at the lr drop
    ([("epochs", 12), ("search.objectives", [{"metric": "val_acc", "mode": "max"},
                                             {"metric": "cost.params", "mode": "min"}])], 6, 0.0),
])
def test_the_default_first_rung_and_branch_follow_the_schedule(changes, grace, branch):
    space = parse(patched(BASE, ("search.grace_period", None), *changes))
    assert (space.search.grace_period, space.search.branch_epochs) == (grace, branch)


def test_default_grace_period_and_branch_follow_a_changed_epochs():
    from gunn_search.space import with_overrides

    space = parse(patched(BASE, ("search.grace_period", None), ("epochs", 30)))
    assert "grace_period" not in space.data["search"]  # resolved, not written back
    assert "branch_epochs" not in space.data["search"]
    changed = with_overrides(space, {"epochs": 12}).search
    assert (changed.grace_period, changed.branch_epochs) == (6, 0.0)
    cosine = parse(patched(BASE, ("search.grace_period", None), ("epochs", 30),
                           ("schedule", {"kind": "cosine"})))
    changed = with_overrides(cosine, {"epochs": 12}).search
    assert (changed.grace_period, changed.branch_epochs) == (2, 2.0)
    no_branch = parse(patched(BASE, ("search.grace_period", None), ("epochs", 30),
                              ("search.branch_epochs", 0)))
    assert with_overrides(no_branch, {"epochs": 12}).search.grace_period == 6


# --- fingerprint ----------------------------------------------------------------------------------

def test_fingerprint_is_stable_and_ignores_defaults_and_placement():
    fp = fingerprint(parse(BASE))
    assert len(fp) == 64 and fp == fingerprint(parse(BASE, "other.yaml"))
    same = [
        [("schedule.kind", "step")], [("optim.momentum", 0.9)], [("search.num_samples", 32)],
        [("resources.gpus_per_trial", "auto")], [("model.family", "gunn")], [("seed", 0)],
        [("model.stages.1.K", 1)], [("model.stages.0.M", 1)],
        [("name", "other")], [("data.data_dir", "/elsewhere")], [("data.download", True)],
        [("device", "cpu")], [("out_dir", "/tmp/x")], [("num_threads", 2)],
        [("tracking", {"uri": "sqlite:///x.db", "experiment": "e"})],
    ]
    for changes in same:
        assert fingerprint(parse(patched(BASE, *changes))) == fp, changes


def test_fingerprint_changes_with_what_the_trials_mean():
    fp = fingerprint(parse(BASE))
    different = [
        [("epochs", 5)], [("optim.lr", 0.1)], [("optim.lr", {"low": 0.01, "high": 0.2, "log": True})],
        [("optim.lr", {"low": 0.01, "high": 0.3})], [("optim.momentum", 0.8)],
        [("batch_size", {"choice": [32, 128]})], [("model.stages.0.n", {"choice": [2, 8]})],
        [("model.stages.1.P", {"choice": [2, 3, 4]})], [("model.stages.0.M", 2)],
        [("data.name", "synthetic")], [("data.val_fraction", 0.2)], [("seed", 1)],
        [("search.num_samples", 8)], [("search.seed", 1)], [("budget", {"max_params": 10**6})],
        [("resources.cpus_per_trial", 2)], [("schedule.kind", "cosine")],
    ]
    seen = {fp}
    for changes in different:
        other = fingerprint(parse(patched(BASE, *changes)))
        assert other not in seen, changes
        seen.add(other)
