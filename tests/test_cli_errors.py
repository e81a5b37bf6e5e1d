"""Bad input through the CLIs: one line naming what is wrong, exit 2, nothing already done lost."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gunn_search.cli import main as search_cli
from gunn_search.cli import train as train_cli
from gunn_search.space import resolve_space_path
from tests.conftest import free_port
from trainers.checkpoint import save_checkpoint

SMOKE = yaml.safe_load(resolve_space_path("smoke.yaml").read_text())


def space_file(tmp_path, text=None, **changes) -> str:
    data = json.loads(json.dumps(SMOKE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        d = data
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if isinstance(d, list):
            d[int(leaf)] = value
        else:
            d[leaf] = value
    path = tmp_path / "space.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    return str(path)


def one_line_error(capsys, rc, prog="gunn-search"):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"{prog}: error: "), err
    return err


SPACE_CASES = [  # (file text or changes, words the message must contain)
    ("missing", ["nosuch.yaml", "no such file"]),
    ("model: [unclosed\n", ["space.yaml", "line"]),
    ('!!python/object/apply:os.system ["echo pwned"]\n', ["space.yaml", "tag"]),
    ({"learning_rate": 0.1}, ["space.yaml", "learning_rate"]),
    ({"epochs": "ten"}, ["space.yaml", "epochs", "integer"]),
    ({"model__stages__0__n": {"choice": []}}, ["space.yaml", "model.stages.0.n", "empty"]),
    ({"optim__lr": {"low": 0.3, "high": 0.02, "log": True}}, ["space.yaml", "optim.lr", "low"]),
    ({"optim__weight_decay": {"low": 0.0, "high": 0.001, "log": True}},
     ["space.yaml", "optim.weight_decay", "log"]),
    ({"optim__momentum": {"choice": [0.9, 1.5]}}, ["space.yaml", "optim.momentum", "1.5"]),
    ({"schedule__milestones": {"choice": [0.5, 0.75]}}, ["space.yaml", "schedule.milestones",
                                                         "cannot be searched"]),
    ({"schedule__kind": {"low": 1, "high": 2}}, ["space.yaml", "schedule.kind", "numeric"]),
    ({"model__stages__0": {"N": {"choice": [250]}, "P": {"choice": [20, 30]}}},
     ["space.yaml", "model.stages.0"]),
    ({"budget": {"max_params": 10}}, ["space.yaml", "budget"]),
    ({"data__name": "imagenet21k"}, ["space.yaml", "data.name"]),
    ({"epochs": -3}, ["space.yaml", "epochs"]),
    ({"search__num_samples": 0}, ["space.yaml", "search.num_samples"]),
    ({"dataset": {"name": "digits"}}, ["space.yaml", "dataset", "now `data`"]),
]


@pytest.mark.parametrize("case,words", SPACE_CASES, ids=[str(i) for i in range(len(SPACE_CASES))])
def test_bad_space_files(tmp_path, capsys, case, words):
    if case == "missing":
        path = str(tmp_path / "nosuch.yaml")
    elif isinstance(case, str):
        path = space_file(tmp_path, text=case)
    else:
        path = space_file(tmp_path, **case)
    err = one_line_error(capsys, search_cli.main(["--space", path, "--dry-run"]))
    for w in words:
        assert w in err, err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("flags,words", [
    (["--max-epochs", "-1"], ["epochs"]),
    (["--num-samples", "0"], ["num_samples"]),
    (["--cpus-per-trial", "0"], ["cpus_per_trial"]),
    (["--gpus-per-trial", "1"], ["no GPU", "--gpus-per-trial 0"]),
    (["--tracking-uri", "ftp://example/x"], ["--tracking-uri", "scheme"]),
    (["--tracking-uri", "http://"], ["--tracking-uri", "no host"]),
    (["--resume"], ["--resume", "nothing to resume"]),
    (["--resume", "smoke-7"], ["--resume smoke-7", "no such search"]),
    (["--max-failures", "-1"], ["--max-failures"]),
])
def test_bad_search_flags(tmp_path, capsys, monkeypatch, flags, words):
    monkeypatch.chdir(tmp_path)
    if "--gpus-per-trial" in flags and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the flag is valid there
    err = one_line_error(capsys, search_cli.main(["--space", "smoke.yaml", *flags]))
    for w in words:
        assert w in err, err


def test_missing_dataset_offline_is_reported_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = space_file(tmp_path, data__name="cifar10", data__download=False,
                      data__data_dir=str(tmp_path / "nodata"))
    err = one_line_error(capsys, search_cli.main(["--space", path]))
    assert "nodata" in err and "CIFAR-10" in err
    assert not (tmp_path / "gunn-search-runs").exists()  # nothing started


def test_unreachable_address_fails_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    port = free_port()
    err = one_line_error(capsys, search_cli.main(["--space", "smoke.yaml", "--address",
                                                  f"127.0.0.1:{port}"]))
    assert f"127.0.0.1:{port}" in err


def test_resume_with_a_different_space_keeps_the_previous_search(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp_dir = tmp_path / "gunn-search-runs" / "smoke"
    exp_dir.mkdir(parents=True)
    state = {"parent_run_id": "x", "experiment_id": "1", "tracking_uri": "sqlite:///x.db",
             "fingerprint": "0" * 64, "space_path": "/elsewhere/smoke.yaml"}
    (exp_dir / "gunn_search.json").write_text(json.dumps(state))
    err = one_line_error(capsys, search_cli.main(["--space", "smoke.yaml", "--resume"]))
    assert "differs" in err
    assert json.loads((exp_dir / "gunn_search.json").read_text()) == state  # untouched
    # and a new search of the same experiment goes beside it (a folder of its own)
    from gunn_search.run.search_names import new_name
    assert new_name(str(tmp_path / "gunn-search-runs"), "smoke") == ("smoke-2", 2)


def test_resume_with_a_changed_epoch_count_names_the_flag_and_keeps_the_search(tmp_path, capsys,
                                                                             monkeypatch):
    from gunn_search.space import fingerprint, load_space
    monkeypatch.chdir(tmp_path)
    exp_dir = tmp_path / "gunn-search-runs" / "smoke"
    exp_dir.mkdir(parents=True)
    space = load_space("smoke.yaml")
    state = {"parent_run_id": "x", "experiment_id": "1", "tracking_uri": "sqlite:///x.db",
             "fingerprint": fingerprint(space), "space_path": str(space.source),
             "settings": {"--max-epochs": space.max_epochs, "--num-samples": 5, "--seed": 0}}
    (exp_dir / "gunn_search.json").write_text(json.dumps(state))
    err = one_line_error(capsys, search_cli.main(["--space", "smoke.yaml", "--resume",
                                                  "--num-samples", "5", "--max-epochs", "9"]))
    assert f"started with --max-epochs {space.max_epochs} (not 9);" in err
    err = one_line_error(capsys, search_cli.main(["--space", "smoke.yaml", "--resume",
                                                  "--seed", "3"]))
    assert (f"--num-samples 5 (not {space.search.num_samples}), --seed 0 (not 3);" in err)
    assert json.loads((exp_dir / "gunn_search.json").read_text()) == state  # untouched


def test_export_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from mlflow.tracking import MlflowClient
    from gunn_search.track import store as tr
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # no store at all
    err = one_line_error(capsys, search_cli.main(["export", "--experiment", "smoke", "--out", "b.yaml"]))
    assert "mlflow.db" in err
    client = MlflowClient(uri)
    exp = client.create_experiment("smoke")
    client.create_run(exp, tags={tr.ROLE_TAG: "search"})  # a search with no finished trial
    capsys.readouterr()  # MLflow's own notes on creating the store
    err = one_line_error(capsys, search_cli.main(["export", "--experiment", "smoke", "--out", "b.yaml"]))
    assert "no finished trials" in err
    err = one_line_error(capsys, search_cli.main(["export", "--experiment", "nope", "--out", "b.yaml"]))
    assert "nope" in err and "not found" in err
    err = one_line_error(capsys, search_cli.main(["export", "--experiment", "smoke", "--run-id",
                                                  "0123abc", "--out", "b.yaml"]))
    assert "0123abc" in err
    err = one_line_error(capsys, search_cli.main(["export", "--experiment", "smoke", "--epochs", "0",
                                                  "--out", "b.yaml"]))
    assert "--epochs" in err


def test_export_to_unwritable_paths(tmp_path, capsys):
    from gunn_search.results.export import ExportError, export_config
    from trainers.config import parse_config
    # the path checks run before anything is written
    cfg = parse_config({"model": {"name": "gunn15"}})
    full = export_config(cfg, trial_run_id="../../../etc/evil")
    out_dir = (tmp_path / full.out_dir).resolve()
    assert out_dir.is_relative_to((tmp_path / "runs").resolve())  # cannot escape runs/


TINY_TRAIN = {"model": {"stages": [{"N": 8, "P": 2, "K": 1, "M": 1}], "stem_channels": 4},
              "data": {"name": "synthetic", "synthetic_train_size": 64, "synthetic_test_size": 32},
              "epochs": 1, "batch_size": 32}


def train_file(tmp_path, data) -> str:
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_gunn_train_refuses_corrupt_and_tampered_checkpoints(tmp_path, capsys):
    cfg = train_file(tmp_path, {**TINY_TRAIN, "out_dir": str(tmp_path / "out")})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    err = one_line_error(capsys, train_cli.main(["--config", cfg, "--resume", str(corrupt)]),
                         "gunn-train")
    assert "corrupt.pt" in err

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    tampered = tmp_path / "tampered.pt"
    with open(tampered, "wb") as f:
        pickle.dump({"format_version": 1, "model": Evil()}, f)
    err = one_line_error(capsys, train_cli.main(["--config", cfg, "--resume", str(tampered)]),
                         "gunn-train")
    assert "tampered.pt" in err and "weights_only" in err
    assert not (tmp_path / "pwned").exists()

    err = one_line_error(capsys, train_cli.main(["--config", cfg, "--resume"]), "gunn-train")
    assert "no checkpoint" in err


@pytest.mark.parametrize("flags,words", [
    (["--epochs", "-3"], ["epochs"]),
    (["--device", "cuda"], ["cuda"]),
    (["--tracking-uri", "nonsense://x"], ["--tracking-uri"]),
])
def test_gunn_train_bad_flags(tmp_path, capsys, flags, words):
    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = train_file(tmp_path, {**TINY_TRAIN, "out_dir": str(tmp_path / "out")})
    err = one_line_error(capsys, train_cli.main(["--config", cfg, *flags]), "gunn-train")
    for w in words:
        assert w in err, err


def test_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: digits}\nmodel: {stages: []}\n")
    res = subprocess.run([str(Path(sys.executable).parent / "gunn-search"), "--space", str(bad),
                          "--dry-run"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_a_bad_space_is_reported_before_ray_mlflow_or_torch_are_imported(tmp_path):
    # A typo should answer at once: nothing heavy is imported before the space is valid.
    bad = space_file(tmp_path, search__num_samples=0)
    code = ("import sys; from gunn_search.cli import main as cli; "
            f"rc = cli.main(['--space', {bad!r}]); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "2 []"
    assert "search.num_samples" in out.stderr
