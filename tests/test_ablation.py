"""`gunn-search ablate`: the variants' configs, the pairing (same initial weights and data
order per seed), the table, the command's errors, and one real ablation (Ray + MLflow)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from gunn_search.ablation.report import AblationResult, final_error, pairs_of, to_json, to_markdown
from gunn_search.ablation.variants import (
    ablation_space,
    base_config,
    cell_values,
    check_pairing,
    parse_variants,
    seeds_of,
    variant_config,
)
from gunn_search.cli.main import main
from gunn_search.errors import UsageError
from gunn_search.space import trial_config
from tests.conftest import free_port
from trainers.config import parse_config

BIN = Path(sys.executable).parent


def tiny_config(**over) -> dict:
    cfg = {"model": {"family": "gunn", "stem_channels": 8, "head_channels": None,
                     "stages": [{"N": 8, "P": 2, "K": 1, "M": 1}, {"N": 12, "P": 3, "K": 1, "M": 1}]},
           "data": {"name": "digits", "val_fraction": 0.2}, "optim": {"lr": 0.1},
           "schedule": {"kind": "cosine"}, "epochs": 1, "batch_size": 64, "seed": 0}
    cfg.update(over)
    return cfg


# --- configs ------------------------------------------------------------------------------------

def test_variants_are_parsed_and_checked():
    assert parse_variants("gunn, SUNN,gunn-nores") == ["gunn", "sunn", "gunn-nores"]
    for text, words in [("gunn,resnet", "unknown variant 'resnet'"), ("gunn,gunn", "twice"),
                        ("gunn", "at least two")]:
        with pytest.raises(UsageError, match=words):
            parse_variants(text)
    assert pairs_of(["sunn", "gunn", "gunn-nores"]) == [("gunn", "sunn"), ("gunn", "gunn-nores")]
    assert pairs_of(["sunn", "sunn-nores"]) == [("sunn", "sunn-nores")]


def test_each_cell_trains_the_trial_config_with_its_family_residual_and_seed(tmp_path):
    trial = parse_config(tiny_config(seed=7, epochs=5))
    base = base_config(trial, epochs=2, data_dir=str(tmp_path))
    assert base.epochs == 2 and base.data.data_dir == str(tmp_path.resolve()) and base.tracking is None
    seeds = seeds_of(base, 3)
    assert seeds == [7, 8, 9]
    space = ablation_space(base, ["gunn", "sunn", "gunn-nores"], seeds)
    for v, (family, residual) in [("gunn", ("gunn", True)), ("sunn", ("sunn", True)),
                                  ("gunn-nores", ("gunn", False))]:
        for s in seeds:
            cfg = variant_config(base, v, s)
            assert (cfg.model.family, cfg.model.residual, cfg.seed) == (family, residual, s)
            # only those three differ from the trial's config
            same = cfg.model_dump(exclude={"seed", "epochs"})
            same["model"].pop("family"), same["model"].pop("residual")
            want = trial.model_dump(exclude={"seed", "epochs"})
            want["model"].pop("family"), want["model"].pop("residual")
            want["data"]["data_dir"] = str(tmp_path.resolve())
            assert same == want
            # what the trainable trains (the search's train_trial on the ablation's space)
            assert trial_config(space, cell_values(v, s)) == cfg
    final = base_config(trial, final=True)
    fspace = ablation_space(final, ["gunn", "sunn"], [0, 1])
    assert trial_config(fspace, cell_values("sunn", 1)).data.split == "final"


def test_a_registered_model_is_ablated_as_its_stages():
    trial = parse_config({"model": {"name": "gunn15"}, "data": {"name": "cifar100"}})
    base = base_config(trial)
    assert base.model.name is None and [s.N for s in base.model.stages] == [240, 300, 360]
    sunn = variant_config(base, "sunn", 0).model.network_spec(100)
    assert sunn.family == "sunn" and sunn.head_channels == 360 and sunn.projection


# --- pairing ------------------------------------------------------------------------------------

def initial_weights(cfg):
    from trainers.config import num_classes
    from trainers.model.network import build_model

    torch.manual_seed(cfg.seed)  # as trainers.loop.train does before building the model
    return build_model(cfg.model.network_spec(num_classes(cfg.data))).state_dict()


def test_same_seed_same_initial_weights_different_seed_different():
    base = base_config(parse_config(tiny_config()))
    w = {(v, s): initial_weights(variant_config(base, v, s))
         for v in ("gunn", "sunn", "gunn-nores") for s in (0, 1)}
    for v in ("sunn", "gunn-nores"):
        assert w[v, 0].keys() == w["gunn", 0].keys()
        assert all(torch.equal(w[v, 0][k], w["gunn", 0][k]) for k in w[v, 0])
    convs = [k for k in w["gunn", 0] if k.endswith("conv1.weight")]
    assert convs and not any(torch.equal(w["gunn", 0][k], w["gunn", 1][k]) for k in convs)
    assert check_pairing(base, ["gunn", "sunn", "gunn-nores"], 0) == 2 * len(w["gunn", 0])


def test_training_pairs_initial_weights_and_data_order(monkeypatch):
    """Through the real training loop: the weights at the first step and every batch the model
    sees are the same for GUNN, SUNN and GUNN-NoRes with one seed, and differ with another."""
    import trainers.loop as loop

    seen = []
    real = loop.augment
    monkeypatch.setattr(loop, "augment", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    data = {"name": "synthetic", "synthetic_train_size": 96, "synthetic_test_size": 16}
    base = base_config(parse_config(tiny_config(data=data, batch_size=32, epochs=2)))

    def run(variant, seed):
        cfg = variant_config(base, variant, seed).model_copy(update={"out_dir": None,
                                                                        "device": "cpu"})
        first = {}

        def on_step(epoch, i, model):
            if (epoch, i) == (1, 0):
                first.update({k: v.clone() for k, v in model.state_dict().items()})

        seen.clear()
        loop.train(cfg, on_step=on_step, log=lambda m: None)
        return first, [x.clone() for x in seen]

    (w0, x0), (w1, x1), (w2, x2) = run("gunn", 0), run("sunn", 0), run("gunn-nores", 0)
    assert len(x0) == 4  # 86 training images (10 % held out): 2 batches of 32, 2 epochs
    for w, x in ((w1, x1), (w2, x2)):
        assert all(torch.equal(w0[k], w[k]) for k in w0)
        assert all(torch.equal(a, b) for a, b in zip(x0, x, strict=True))
    w3, x3 = run("gunn", 1)
    assert not all(torch.equal(w0[k], w3[k]) for k in w0 if k.endswith("weight"))
    assert not torch.equal(x0[0], x3[0])


# --- the table ----------------------------------------------------------------------------------

def result() -> AblationResult:
    return AblationResult(
        "smoke", "abc123", "s1", "digits", "search", 4, ["gunn", "sunn", "gunn-nores"], [0, 1, 2],
        {"gunn": {0: 5.1, 1: 4.8, 2: 5.6}, "sunn": {0: 6.0, 1: 5.3, 2: 6.4},
         "gunn-nores": {0: 5.5, 1: None, 2: 6.3}},
        {"gunn-nores": {1: "errored"}}, {"gunn": {0: "r0", 1: "r1", 2: "r2"}}, "parent")


def test_markdown_table():
    md = to_markdown(result())
    assert md.splitlines()[0] == ("Paired ablation of trial run `abc123` (experiment smoke): "
                                  "digits, 4 epochs, final validation error (%), seeds 0, 1, 2")
    assert "| GUNN | 5.17 ± 0.40 | 5.10 | 4.80 | 5.60 |" in md
    assert "| SUNN | 5.90 ± 0.56 | 6.00 | 5.30 | 6.40 |" in md
    assert "| GUNN-NoRes | 5.90 ± 0.57 | 5.50 | n/a | 6.30 |" in md
    assert "| GUNN - SUNN | -0.73 (n=3) | [-1.25, -0.22] | -0.90 | -0.50 | -0.80 |" in md
    # d = (-0.4, -0.7): sd 0.2121, sem 0.15, t_{0.975, 1} = 12.706: -0.55 ± 1.906
    assert "| GUNN - GUNN-NoRes | -0.55 (n=2) | [-2.46, +1.36] | -0.40 | n/a | -0.70 |" in md
    assert "GUNN-NoRes seed 1 (errored)" in md
    test = AblationResult(**{**result().__dict__, "split": "final"})
    assert "final test error (%)" in to_markdown(test)


def test_json_holds_every_number():
    j = json.loads(json.dumps(to_json(result())))
    assert j["variant_stats"]["gunn"]["mean"] == pytest.approx(15.5 / 3)
    assert j["variant_stats"]["gunn-nores"]["per_seed"] == {"0": 5.5, "1": None, "2": 6.3}
    assert j["variant_stats"]["gunn"]["run_ids"] == {"0": "r0", "1": "r1", "2": "r2"}
    gs = j["pairs"][0]
    assert (gs["a"], gs["b"], gs["n"]) == ("gunn", "sunn", 3)
    assert (gs["ci_low"], gs["ci_high"]) == pytest.approx((-1.250448, -0.216219), abs=1e-6)
    assert j["metric"] == "final validation error (%)" and j["confidence"] == 0.95


def test_final_error_reads_the_split_metric():
    assert final_error({"val_acc": 0.9}, "search") == pytest.approx(10.0)
    assert final_error({"val_acc": 0.9, "test_acc": 0.8}, "final") == pytest.approx(20.0)
    assert final_error({"val_acc": float("nan")}, "search") is None
    assert final_error({}, "search") is None


# --- the command --------------------------------------------------------------------------------

def make_store(root: Path, epochs: int = 1) -> tuple[str, str]:
    """A tracking store holding one finished search trial with a tiny digits config, as a
    search leaves it: (tracking URI, trial run id)."""
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("tiny", artifact_location=(root / "mlartifacts").as_uri())
    parent = client.create_run(exp, tags={tr.ROLE_TAG: "search"}).info.run_id
    trial = client.create_run(exp, tags={tr.ROLE_TAG: "trial", tr.PARENT_TAG: parent,
                                         tr.TRIAL_TAG: "t0", tr.STATUS_TAG: "completed"})
    client.log_metric(trial.info.run_id, "val_acc", 0.5, step=1)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "train_config.yaml"
        p.write_text(yaml.safe_dump(parse_config(tiny_config(epochs=epochs)).model_dump(mode="json")))
        client.log_artifact(trial.info.run_id, str(p))
    for r in (parent, trial.info.run_id):
        client.set_terminated(r)
    return uri, trial.info.run_id


@pytest.mark.parametrize("flags, words", [
    (["--variants", "gunn,densenet"], "--variants: unknown variant 'densenet'"),
    (["--seeds", "1"], "--seeds must be >= 2"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--gpus-per-trial", "x"], "expected auto or a number"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, words):
    assert main(["ablate", "--experiment", "tiny", *flags,
                 "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gunn-search: error: ") and words in err and len(err.splitlines()) == 1


def test_unknown_experiment_run_or_store_is_one_line_and_exit_2(tmp_path, capsys):
    uri, _ = make_store(tmp_path)
    cases = [(["--experiment", "nope", "--tracking-uri", uri], "experiment 'nope' not found"),
             (["--experiment", "tiny", "--run-id", "0" * 32, "--tracking-uri", uri], "not found"),
             (["--experiment", "tiny", "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"],
              "no MLflow store"),
             (["--experiment", "tiny", "--tracking-uri", uri, "--address",
               f"127.0.0.1:{free_port()}"], "cannot reach a Ray cluster there"),
             (["--experiment", "tiny", "--tracking-uri", uri, "--address", "ray://10.0.0.1:10001"],
              "with Ray Client the driver loop runs on the head node")]
    for argv, words in cases:
        assert main(["ablate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "gunn-search-runs").exists()  # nothing started


@pytest.mark.slow
def test_an_ablation_end_to_end(tmp_path):
    """Real Ray trials and a real MLflow store: 2 variants x 2 seeds x 1 epoch on digits."""
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    uri, trial_id = make_store(tmp_path)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    res = subprocess.run([str(BIN / "gunn-search"), "ablate", "--experiment", "tiny",
                          "--variants", "gunn,gunn-nores", "--seeds", "2", "--tracking-uri", uri],
                         cwd=tmp_path, env=env, text=True, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith(f"Paired ablation of trial run `{trial_id}`")
    assert "| GUNN - GUNN-NoRes |" in res.stdout and "initial weights are identical" in res.stderr

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny")
    parents = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'ablation'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gunn_search.ablated_run_id"] == trial_id
    note = parent.data.tags["mlflow.note.content"]
    assert note in res.stdout  # the description is the printed table
    assert {"ablation.md", "ablation.json", "ablation_config.yaml"} <= \
        {a.path for a in client.list_artifacts(parent.info.run_id)}
    summary = json.loads(Path(client.download_artifacts(parent.info.run_id, "ablation.json",
                                                        str(tmp_path))).read_text())

    children = client.search_runs([exp.experiment_id],
                                  f"tags.`{tr.PARENT_TAG}` = '{parent.info.run_id}'")
    assert len(children) == 4
    errors = {}
    for c in children:
        t, p = c.data.tags, c.data.params
        assert t[tr.ROLE_TAG] == "ablation_run" and t[tr.STATUS_TAG] == "completed"
        v, s = t["gunn_search.variant"], int(t["gunn_search.seed"])
        assert (p["model.family"], p["model.residual"], p["seed"]) == \
            ("gunn", str(v == "gunn"), str(s))
        assert [m.step for m in client.get_metric_history(c.info.run_id, "val_acc")] == [1]
        assert "train_config.yaml" in [a.path for a in client.list_artifacts(c.info.run_id)]
        errors[v, s] = 100 * (1 - c.data.metrics["val_acc"])
        assert summary["variant_stats"][v]["run_ids"][str(s)] == c.info.run_id
    assert set(errors) == {(v, s) for v in ("gunn", "gunn-nores") for s in (0, 1)}
    pair = summary["pairs"][0]
    for s in (0, 1):
        assert summary["variant_stats"]["gunn"]["per_seed"][str(s)] == pytest.approx(errors["gunn", s])
        assert pair["per_seed"][str(s)] == pytest.approx(errors["gunn", s] - errors["gunn-nores", s])
    assert pair["ci_low"] <= pair["mean"] <= pair["ci_high"]
