"""gunn_search.run.trainable outside Ray: the per-process data cache and the trial's TrainConfig."""

import subprocess
import sys

import pytest
import torch

from gunn_search.run import trainable
from gunn_search import status as trial_status
from gunn_search.space import example_configs, load_space, trial_config
from gunn_search.space.sample import runtime_config
from gunn_search.run.trainable import cached_data
from tests.conftest import run_cli
from trainers.config import DataConfig


def synthetic(**kw) -> DataConfig:
    return DataConfig(name="synthetic", synthetic_train_size=60, synthetic_test_size=20, **kw)


def test_cached_data_is_loaded_once_per_process_for_the_same_settings(monkeypatch):
    calls = []
    real = trainable.load_data
    monkeypatch.setattr(trainable, "load_data", lambda d, dev: calls.append(d) or real(d, dev))
    trainable._DATA_CACHE.clear()
    a = cached_data(synthetic(), "cpu")
    b = cached_data(synthetic(cyclic_shift=True), "cpu")  # augmentation only: same tensors
    assert a is b and len(calls) == 1
    assert a.train_x.dtype == torch.uint8 and a.eval_name == "val"


def test_cached_data_reloads_on_new_settings_and_keeps_one_dataset(monkeypatch):
    trainable._DATA_CACHE.clear()
    a = cached_data(synthetic(), "cpu")
    c = cached_data(synthetic(val_fraction=0.2), "cpu")
    assert c is not a and c.eval_x.shape[0] == 12 and a.eval_x.shape[0] == 6
    assert len(trainable._DATA_CACHE) == 1  # the old split was dropped
    assert cached_data(synthetic(val_fraction=0.2), "cpu") is c


def test_a_trial_trains_the_space_config_with_its_sample_put_in(tmp_path):
    space = load_space("smoke.yaml")
    values = example_configs(space, n=1, seed=3)[0]
    tc = trial_config(space, values)
    assert tc.optim.lr == values["optim.lr"] and tc.optim.momentum == values["optim.momentum"]
    assert tc.optim.weight_decay == values["optim.weight_decay"]
    for i in range(2):
        assert tc.model.stages[i].N == values[f"model.stages.{i}.N"] == \
            values[f"model.stages.{i}.n"] * values[f"model.stages.{i}.P"]
        assert tc.model.stages[i].K == values[f"model.stages.{i}.K"]
    # everything not searched is the space's own value
    assert tc.epochs == space.base.epochs and tc.data == space.base.data
    assert tc.schedule == space.base.schedule and tc.seed == space.base.seed
    run = runtime_config(tc, "cpu", str(tmp_path), 1)
    assert (run.device, run.out_dir, run.num_threads) == ("cpu", str(tmp_path), 1)
    assert run.model_dump(exclude={"device", "out_dir", "num_threads"}) == \
        tc.model_dump(exclude={"device", "out_dir", "num_threads"})


def test_trial_status_names_match_the_trainer():
    from trainers.loop import STATUS_NONFINITE
    assert trial_status.TrialStatus.NONFINITE == STATUS_NONFINITE
    assert trainable.METRIC == trial_status.METRIC == "val_acc"


def test_the_search_driver_does_not_import_torch():
    # The driver only validates, samples and tracks; importing torch there cost 1.3-1.9 s of
    # every search's start-up. Checked in a fresh interpreter (this one has torch loaded).
    code = ("import sys; import gunn_search.cli.main, gunn_search.run.search, gunn_search.run.search_runs, "
            "gunn_search.results.plots, gunn_search.run.progress, gunn_search.run.searcher, gunn_search.results.export; "
            "import trainers; trainers.NetworkSpec; "
            "assert gunn_search.cli.main.main(['--space', 'smoke.yaml', '--dry-run']) == 0; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


COMPILED_SPACE = """\
name: compiled
model: {stem_channels: 8, head_channels: null, gunn_mode: keep,
        stages: [{N: 8, P: 2, K: 1, M: 1}]}
data: {name: synthetic, synthetic_train_size: 40, synthetic_test_size: 10}
optim: {lr: {low: 0.05, high: 0.1, log: true}}
epochs: 1
batch_size: 16
amp: always             # the CUDA path on the CPU: bf16 autocast,
channels_last: always   # channels_last
compile: always         # and torch.compile (inductor)
search: {num_samples: 1, max_concurrent: 1, grace_period: 1}
resources: {cpus_per_trial: 2, gpus_per_trial: 0}
"""


@pytest.mark.slow
def test_a_search_trial_trains_compiled_with_bf16_and_channels_last(tmp_path):
    """`compile`, `amp` and `channels_last` reach trainers.loop.train from a space file through
    the trainable, in a Ray worker: inductor writes its kernels into the cache directory the
    search was started with (60-120 s on 2 cores, most of it compiling)."""
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    (tmp_path / "space.yaml").write_text(COMPILED_SPACE)
    res = run_cli(["gunn-search", "--space", "space.yaml", "--storage", str(tmp_path / "runs")],
                  tmp_path, env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")})
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("compiled")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags[tr.STATUS_TAG] == "completed", run.data.tags
    assert {k: run.data.params[k] for k in ("amp", "channels_last", "compile")} == \
        {"amp": "always", "channels_last": "always", "compile": "always"}
    assert run.data.metrics["peak_memory_bytes"] > 0 and 0 <= run.data.metrics["val_acc"] <= 1
    assert any((tmp_path / "inductor").rglob("*.py")), "the trial did not compile"


def test_a_trial_branches_at_its_asha_rungs_and_reports_what_the_rung_compares():
    from gunn_search.space import parse_space
    from gunn_search.run.trainable import annealing_branch, rung_result
    from gunn_search.status import ANNEALED_METRIC

    data = load_space("smoke.yaml").data
    def space(**search):
        return parse_space({**data, "epochs": 9, "search": {**data["search"], **search}}, "t")
    b = annealing_branch(space(grace_period=1, reduction_factor=3, branch_epochs=0.5), 9)
    assert b.at == {1, 3} and b.epochs == 0.5  # rung 9 is the trial's last epoch: no branch
    assert annealing_branch(space(grace_period=1, reduction_factor=3), 3).at == {1}
    assert annealing_branch(space(scheduler="fifo"), 9) is None
    assert annealing_branch(space(grace_period=1, branch_epochs=0), 9) is None
    assert annealing_branch(space(grace_period=1, reduction_factor=3, branch_epochs=0.5,
                                  branch_rungs="first"), 9).at == {1}
    # with Hyperband brackets, at the rungs of the trial's own bracket
    from gunn_search.space.rungs import bracket_of

    sp = space(grace_period=1, reduction_factor=3, branch_epochs=0.5, brackets=2)
    ids = {bracket_of(f"t{i}", sp.search, 9): f"t{i}" for i in range(20)}
    assert annealing_branch(sp, 9, ids[0]).at == {1, 3}
    assert annealing_branch(sp, 9, ids[1]).at == {3}
    at_rung = {"epoch": 3, "val_acc": 0.2, ANNEALED_METRIC: 0.7}
    assert rung_result(at_rung) == 0.7
    assert rung_result({"epoch": 4, "val_acc": 0.3}) == 0.3  # not a rung: ASHA does not look
