"""The Ray Tune function trainable: one trial = one `trainers.train` run.

It builds the network from the sampled flat config, loads the data once onto its device,
trains epoch by epoch, and `tune.report`s each epoch's metrics with a checkpoint. Restarted
(after a failure or a driver restore) it resumes from `tune.get_checkpoint()`.
The trial's outcome is reported in the metric `trial_status`, which the tracking callback turns
into the MLflow status tag.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ray import tune

from trainers.config import DataConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig

from gunn_search import faults
from gunn_search.space import SearchSpace, dataset_num_classes, network_spec
from gunn_search.trial_status import COMPLETED, METRIC, NONFINITE, OOM, REJECTED, RUNNING

if TYPE_CHECKING:
    from trainers.data import DataSplits

# torch and the training loop are imported where a trial runs, not at the top: the driver
# imports this module for `train_trial` (Tune pickles it by reference) and never trains, and
# importing torch there cost 1.3-1.9 s of every search's start-up on the 2-core CPU VM.


def load_data(d: DataConfig, device: str) -> "DataSplits":
    """`trainers.loop.load_data`, imported on first use (see above)."""
    from trainers.loop import load_data as _load_data
    return _load_data(d, device)


def space_data_config(space: SearchSpace) -> DataConfig:
    """The search split of the space's dataset (the same train/val split for every trial)."""
    ds = space.dataset
    data = dict(name=ds.name, data_dir=str(ds.data_dir), split="search",
                val_fraction=ds.val_fraction, download=ds.download, split_seed=ds.split_seed,
                cyclic_shift=space.train.cyclic_shift)
    for key in ("synthetic_train_size", "synthetic_test_size", "synthetic_num_classes"):
        if getattr(ds, key, None) is not None:
            data[key] = getattr(ds, key)
    return DataConfig(**data)


def trial_train_config(space: SearchSpace, config: dict, device: str = "cpu",
                       out_dir: str | None = None, num_threads: int | None = None) -> TrainConfig:
    """The exact `TrainConfig` a trial with this sampled `config` trains with."""
    spec = network_spec(space, config, dataset_num_classes(space))
    return TrainConfig(
        model=ModelConfig.from_spec(spec, gunn_mode=space.model.gunn_mode),
        data=space_data_config(space),
        optim=OptimConfig(lr=config["lr"], weight_decay=config["weight_decay"],
                          nesterov=space.train.nesterov),
        schedule=ScheduleConfig(kind=space.train.schedule, warmup_epochs=space.train.warmup_epochs),
        epochs=space.train.epochs, batch_size=int(config["batch_size"]), seed=space.search.seed,
        device=device, out_dir=out_dir, num_threads=num_threads,
    )


# Tune reuses a worker process for trial after trial (reuse_actors=True), and every trial of a
# search reads the same split: keep the last one loaded, per process, instead of loading the
# dataset again for each trial (1.4-2 s per trial for digits here, more for CIFAR). One entry
# only, so a worker never holds two datasets.
_DATA_CACHE: dict[tuple, DataSplits] = {}


def cached_data(d: DataConfig, device: str) -> DataSplits:
    """`load_data(d, device)`, reused while the dataset settings and device stay the same.

    Training only reads the tensors (batches are gathered copies), so trials can share them.
    """
    key = (d.name, d.data_dir, d.split, d.val_fraction, d.split_seed, d.synthetic_train_size,
           d.synthetic_test_size, d.synthetic_num_classes, str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # drop the old dataset before loading the new one
        _DATA_CACHE[key] = load_data(d, device)
    return _DATA_CACHE[key]


def train_trial(config: dict, space: SearchSpace) -> None:
    """Tune function trainable (bind `space` with `tune.with_parameters`)."""
    import torch

    from trainers.checkpoint import CHECKPOINT_NAME
    from trainers.loop import STATUS_NONFINITE, train

    ctx = tune.get_context()
    resources = ctx.get_trial_resources().required_resources if ctx else {}
    cpus = max(1, int(resources.get("CPU", 1)))
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    torch.set_num_threads(cpus)  # the trial's CPU share, not every core of the node

    if not config.get("budget_ok", True):
        tune.report({METRIC: 0.0, "epoch": space.train.epochs, "trial_status": REJECTED})
        return

    workdir = Path(tempfile.mkdtemp(prefix="gunn-trial-"))
    try:
        cfg = trial_train_config(space, config, device=device, out_dir=str(workdir / "run"),
                                 num_threads=cpus)
        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                resume = workdir / CHECKPOINT_NAME
                shutil.copy(Path(d) / CHECKPOINT_NAME, resume)
        data = cached_data(cfg.data, device)  # once per worker process, onto its device

        def on_epoch(metrics: dict, ckpt_path: Path | None) -> bool:
            out = {k: v for k, v in metrics.items() if k != "status"}
            if metrics.get("status") == STATUS_NONFINITE:
                out.update({METRIC: 0.0, "trial_status": NONFINITE})  # a bad result, not a crash
            else:
                out["trial_status"] = COMPLETED if metrics["epoch"] >= cfg.epochs else RUNNING
            ckpt = tune.Checkpoint.from_directory(str(ckpt_path.parent)) if ckpt_path else None
            tune.report(out, checkpoint=ckpt)
            return False

        try:
            hook = faults.step_hook(ctx.get_trial_id()) if ctx else None
            train(cfg, on_epoch=on_epoch, resume=resume, data=data, log=lambda m: None,
                  on_step=hook)
        except torch.cuda.OutOfMemoryError as e:
            first = (str(e).strip().splitlines() or ["CUDA out of memory"])[0]
            tune.report({METRIC: 0.0, "epoch": 0, "trial_status": OOM, "error": first[:250]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
