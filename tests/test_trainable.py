"""gunn_search.trainable outside Ray: the per-process data cache and the trial's TrainConfig."""

import subprocess
import sys

import torch

from gunn_search import trainable, trial_status
from gunn_search.space import example_configs, load_space, trial_config
from gunn_search.space.sample import runtime_config
from gunn_search.trainable import cached_data
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
    code = ("import sys; import gunn_search.cli, gunn_search.search, gunn_search.mlflow_callback, "
            "gunn_search.plots, gunn_search.progress, gunn_search.searcher, gunn_search.export; "
            "import trainers; trainers.NetworkSpec; "
            "assert gunn_search.cli.main(['--space', 'smoke.yaml', '--dry-run']) == 0; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
