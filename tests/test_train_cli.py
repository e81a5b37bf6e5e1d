"""`gunn-train`: trainers.cli (pure PyTorch) and gunn_search.cli.train (the installed script, MLflow)."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trainers import cli as base_cli
from trainers.checkpoint import CHECKPOINT_NAME, FORMAT_VERSION, load_checkpoint

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from gunn_search.cli import train as train_cli  # noqa: E402  (after the telemetry switch)

TINY = [{"N": 8, "P": 2, "K": 2, "M": 1}, {"N": 12, "P": 3, "K": 1, "M": 1}]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def write_config(tmp_path: Path, name: str = "run.yaml", **over) -> Path:
    cfg = {
        "model": {"stages": TINY, "stem_channels": 4, "head_channels": None, "gunn_mode": "naive"},
        "data": {"name": "synthetic", "synthetic_train_size": 96, "synthetic_test_size": 16},
        "optim": {"lr": 0.05},
        "epochs": 1, "batch_size": 32, "device": "cpu", "num_threads": 1,
        "out_dir": str(tmp_path / "out"),
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict) and k != "model":
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def run_ok(main, argv, capsys) -> tuple[dict, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out), err


def run_error(main, argv, capsys) -> str:
    """Exit 2 with exactly one line `gunn-train: error: ...` on stderr, no traceback."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gunn-train: error: "), err
    assert "Traceback" not in err
    assert out == ""
    return lines[0]


BOTH = pytest.mark.parametrize("main", [base_cli.main, train_cli.main], ids=["trainers", "gunn_search"])


@BOTH
def test_trains_and_prints_json(tmp_path, capsys, main):
    cfg = write_config(tmp_path)
    summary, err = run_ok(main, ["--config", cfg], capsys)
    assert summary["status"] == "completed" and summary["epochs"] == 1
    assert summary["checkpoint"] == str(tmp_path / "out" / CHECKPOINT_NAME)
    assert Path(summary["checkpoint"]).is_file()
    assert summary["final"]["epoch"] == 1 and 0.0 <= summary["final"]["val_acc"] <= 1.0
    # The best epoch's accuracy beside the last one's (what the paper's authors report).
    assert summary["best_val_acc"] == summary["final"]["val_acc"]
    assert summary["best_val_acc_epoch"] == 1
    assert "epoch 1/1" in err  # progress goes to stderr, stdout is only the JSON


def test_resume_continues(tmp_path, capsys):
    cfg = write_config(tmp_path)
    first, _ = run_ok(base_cli.main, ["--config", cfg], capsys)
    assert first["epochs"] == 1
    # More epochs change what the run trains (the lr drops move): only when told to accept it.
    second, err = run_ok(base_cli.main, ["--config", cfg, "--resume", "--epochs", "2",
                                         "--resume-changed"], capsys)
    assert second["status"] == "completed" and second["epochs"] == 2
    assert "resumed from" in err and "epoch 2/2" in err and "epoch 1/2" not in err
    assert "changed config: epochs: 1 -> 2" in err
    # And with an explicit checkpoint path.
    third, _ = run_ok(train_cli.main, ["--config", cfg, "--resume", tmp_path / "out" / CHECKPOINT_NAME,
                                       "--epochs", "3", "--resume-changed"], capsys)
    assert third["epochs"] == 3
    assert [c["changes"] for c in load_checkpoint(tmp_path / "out")["config_changes"]] == \
        [["epochs: 1 -> 2"], ["epochs: 2 -> 3"]]
    assert third["best_val_acc"] >= third["final"]["val_acc"]  # over all 3 epochs, resumes too
    assert third["best_val_acc_epoch"] in (1, 2, 3)
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_overrides(tmp_path, capsys):
    cfg = write_config(tmp_path)
    args = base_cli.build_parser().parse_args(
        ["--config", str(cfg), "--epochs", "7", "--data-dir", str(tmp_path / "d"), "--device", "cuda:3",
         "--out", str(tmp_path / "elsewhere"), "--download"])
    c = base_cli.config_from_args(args)
    assert c.epochs == 7 and c.data.data_dir == str(tmp_path / "d") and c.device == "cuda:3"
    assert c.out_dir == str(tmp_path / "elsewhere") and c.data.download is True
    # Without flags the file's values stand.
    c = base_cli.config_from_args(base_cli.build_parser().parse_args(["--config", str(cfg)]))
    assert c.epochs == 1 and c.device == "cpu" and c.out_dir == str(tmp_path / "out")

    # --out and --epochs really steer the run.
    summary, err = run_ok(base_cli.main, ["--config", cfg, "--epochs", "2", "--out", tmp_path / "o2",
                                          "--device", "cpu", "--data-dir", tmp_path / "unused"], capsys)
    assert summary["epochs"] == 2 and "epoch 2/2" in err
    assert summary["checkpoint"] == str(tmp_path / "o2" / CHECKPOINT_NAME)
    assert load_checkpoint(tmp_path / "o2")["config"]["data"]["data_dir"] == str(tmp_path / "unused")
    assert not (tmp_path / "out").exists()


def test_non_finite_loss_exits_1_with_json(tmp_path, capsys):
    cfg = write_config(tmp_path, optim={"lr": 1e6}, epochs=3)
    rc = base_cli.main(["--config", str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 1
    summary = json.loads(out)
    assert summary["status"] == "non-finite loss" and summary["epochs"] < 3
    assert "non-finite" in err


@BOTH
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_cuda_exits_2(tmp_path, capsys, monkeypatch, main, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = run_error(main, ["--config", write_config(tmp_path), "--device", device], capsys)
    assert "CUDA is not available" in line


@BOTH
@pytest.mark.parametrize("text,expect", [
    ("model: {name: gunn15}\nepochs: -1\n", "epochs"),
    ("model: {name: gunn15}\nbogus: 1\n", "bogus"),
    ("model: {stages: [{N: 9, P: 2}]}\n", "model.stages.0"),
    ("model: [\n", "malformed YAML"),
    ("- 1\n", "mapping"),
])
def test_bad_config_exits_2(tmp_path, capsys, main, text, expect):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    line = run_error(main, ["--config", p], capsys)
    assert str(p) in line and expect in line


@BOTH
def test_missing_config_exits_2(tmp_path, capsys, main):
    line = run_error(main, ["--config", tmp_path / "nope.yaml"], capsys)
    assert "nope.yaml" in line



@BOTH
def test_resume_with_a_changed_config_exits_2_naming_it(tmp_path, capsys, main):
    cfg = write_config(tmp_path, epochs=2)
    run_ok(main, ["--config", cfg, "--epochs", "1"], capsys)  # epoch 1 of a run of 1
    line = run_error(main, ["--config", cfg, "--resume"], capsys)  # the file says 2
    assert "epochs: 1 -> 2" in line and "--resume-changed" in line
    assert str(tmp_path / "out" / CHECKPOINT_NAME) in line
    # Only where it runs differs: resumes (nothing left to train).
    summary, _ = run_ok(main, ["--config", cfg, "--resume", "--epochs", "1", "--device", "cpu"],
                        capsys)
    assert summary["epochs"] == 1
    line = run_error(main, ["--config", cfg, "--resume-changed"], capsys)
    assert "--resume-changed needs --resume" in line

@BOTH
def test_resume_without_checkpoint_exits_2(tmp_path, capsys, main):
    cfg = write_config(tmp_path)
    line = run_error(main, ["--config", cfg, "--resume"], capsys)
    assert str(tmp_path / "out" / CHECKPOINT_NAME) in line
    line = run_error(main, ["--config", cfg, "--resume", tmp_path / "missing.pt"], capsys)
    assert "missing.pt" in line


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@BOTH
def test_tampered_checkpoint_exits_2(tmp_path, capsys, main):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "epoch": 0, "payload": _Payload(marker)}, ckpt)
    line = run_error(main, ["--config", write_config(tmp_path), "--resume", ckpt], capsys)
    assert str(ckpt) in line
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"format_version": FORMAT_VERSION, "x": _Payload(marker)}, f, protocol=2)
    run_error(main, ["--config", write_config(tmp_path), "--resume", tmp_path / "evil.pkl"], capsys)
    assert not marker.exists()


@BOTH
def test_negative_epochs_flag_exits_2(tmp_path, capsys, main):
    line = run_error(main, ["--config", write_config(tmp_path), "--epochs", "-2"], capsys)
    assert "epochs" in line and "-2" in line


@BOTH
def test_missing_cifar_offline_exits_2_naming_the_directory(tmp_path, capsys, main):
    data_dir = tmp_path / "empty-data"
    data_dir.mkdir()
    cfg = write_config(tmp_path, data={"name": "cifar10", "download": False, "data_dir": str(data_dir)})
    line = run_error(main, ["--config", cfg], capsys)
    assert str(data_dir) in line and "CIFAR-10" in line
    assert not (tmp_path / "out").exists()


def test_registered_model_by_name(tmp_path):
    cfg = write_config(tmp_path, model={"name": "gunn15"})
    c = base_cli.config_from_args(base_cli.build_parser().parse_args(["--config", str(cfg)]))
    spec = c.model.network_spec(10)
    from trainers.model.network import build_model
    from trainers.model.spec import gunn15_spec
    assert spec == gunn15_spec(10)
    model = build_model(spec, gunn_mode=c.model.gunn_mode)
    assert sum(p.numel() for p in model.parameters()) == 1_585_746


@pytest.mark.slow
def test_mlflow_tracking(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    from gunn_search.tags import STATUS_TAG

    monkeypatch.chdir(tmp_path)  # the default artifact root is relative to the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = write_config(tmp_path, epochs=2)
    summary, err = run_ok(train_cli.main, ["--config", cfg, "--tracking-uri", uri], capsys)
    assert summary["status"] == "completed" and summary["epochs"] == 2
    run_id = summary["mlflow_run_id"]
    assert run_id in err

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gunn-train")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[STATUS_TAG] == "completed"
    assert run.data.params["epochs"] == "2" and run.data.params["model.stages.0.N"] == "8"
    hist = client.get_metric_history(run_id, "val_acc")
    assert sorted(m.step for m in hist) == [1, 2]
    assert len(client.get_metric_history(run_id, "train_loss")) == 2
    assert "final_val_acc" in run.data.metrics
    assert run.data.metrics["best_val_acc"] == summary["best_val_acc"]
    assert run.data.metrics["best_val_acc_epoch"] == summary["best_val_acc_epoch"]
    arts = [a.path for a in client.list_artifacts(run_id, "final")]
    assert "final/checkpoint.pt" in arts
    local = client.download_artifacts(run_id, "final/checkpoint.pt", str(tmp_path / "dl"))
    assert load_checkpoint(local)["epoch"] == 2

    # --experiment names another experiment.
    summary, _ = run_ok(train_cli.main, ["--config", cfg, "--tracking-uri", uri, "--experiment", "mine",
                                         "--epochs", "1", "--out", tmp_path / "o2"], capsys)
    exp2 = client.get_experiment_by_name("mine")
    assert exp2 is not None
    assert [r.info.run_id for r in client.search_runs([exp2.experiment_id])] == [summary["mlflow_run_id"]]
    assert len(client.get_metric_history(summary["mlflow_run_id"], "val_acc")) == 1


def test_bad_tracking_uri_exits_2(tmp_path, capsys):
    line = run_error(train_cli.main, ["--config", write_config(tmp_path), "--tracking-uri", "ftp://x/y"],
                     capsys)
    assert "ftp" in line


def gunn_train_script() -> str:
    found = shutil.which("gunn-train")
    if found is None:
        found = str(Path(sys.executable).parent / "gunn-train")
    assert Path(found).is_file(), "the gunn-train console script is not installed"
    return found


@pytest.mark.slow
def test_installed_console_script(tmp_path):
    cfg = write_config(tmp_path)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run([gunn_train_script(), "--config", str(cfg)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "completed" and summary["epochs"] == 1
    assert "epoch 1/1" in proc.stderr
    assert (tmp_path / "out" / CHECKPOINT_NAME).is_file()



def test_gunn_train_does_not_import_the_search_command():
    """gunn-train shares the tracking helpers, not gunn-search's command (or Ray, or Optuna)."""
    code = ("import sys, gunn_search.cli.train; "
            "print(sorted(m for m in sys.modules if m in ('gunn_search.cli.main', 'ray', 'optuna')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_compile_bf16_channels_last_through_gunn_train(tmp_path, capsys, monkeypatch):
    """The CUDA path of gunn-train (bf16 autocast, channels_last, torch.compile) on the CPU:
    `always` turns each on here. Inductor really compiles (30-90 s on 2 cores for this tiny
    net), and the compiled run trains like the eager one."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    tiny = dict(model={"stages": [{"N": 8, "P": 2, "K": 1, "M": 1}], "stem_channels": 8,
                       "head_channels": None, "gunn_mode": "recompute"},
                data={"synthetic_train_size": 40, "synthetic_test_size": 10},
                batch_size=16, num_threads=2, amp="always", channels_last="always")
    eager, _ = run_ok(base_cli.main, ["--config", write_config(tmp_path, "eager.yaml", **tiny),
                                      "--out", tmp_path / "eager"], capsys)
    graphs = counters["stats"]["unique_graphs"]
    try:
        compiled, err = run_ok(base_cli.main, ["--config", write_config(
            tmp_path, "compiled.yaml", compile="always", **tiny), "--out", tmp_path / "compiled"],
            capsys)
        assert counters["stats"]["unique_graphs"] > graphs  # dynamo captured the network
    finally:
        torch._dynamo.reset()
    assert any((tmp_path / "inductor").rglob("*.py"))  # inductor generated the kernels
    assert compiled["status"] == "completed" and "epoch 1/1" in err
    a, b = compiled["final"], eager["final"]
    assert a["peak_memory_bytes"] > 0 and math.isfinite(a["train_loss"])
    assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=0.05)
    wa = load_checkpoint(tmp_path / "compiled")["model"]
    wb = load_checkpoint(tmp_path / "eager")["model"]
    assert wa.keys() == wb.keys()  # the plain module's state, not the compiled wrapper's
    for k, v in wb.items():
        if v.is_floating_point():
            assert torch.allclose(wa[k], v, rtol=0.02, atol=2e-3), k
