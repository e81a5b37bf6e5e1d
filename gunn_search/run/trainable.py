"""The Ray Tune function trainable: one trial = one `trainers.train` run.

It puts the sampled values into the space's config (`trial_config`), loads the data once onto its device,
trains epoch by epoch, and `tune.report`s each epoch's metrics with a checkpoint. Restarted
(after a failure or a driver restore) it resumes from `tune.get_checkpoint()`.
The trial's outcome is reported in the metric `trial_status`, which the tracking callback turns
into the MLflow status tag.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ray import tune

from trainers.config import DataConfig
from trainers.errors import first_line

from gunn_search.run import faults
from gunn_search.space.rungs import bracket_of, branching_rungs
from gunn_search.run.spare_cpus import LentThreads
from gunn_search.space import Space, trial_config
from gunn_search.space.sample import runtime_config
from gunn_search.status import ANNEALED_METRIC, METRIC, RUNG_METRIC, STATUS_KEY, TrialStatus

if TYPE_CHECKING:
    from trainers.data import DataSplits

# torch and the training loop are imported where a trial runs, not at the top: the driver
# imports this module for `train_trial` (Tune pickles it by reference) and never trains, and
# importing torch there is a second or two of every search's start-up (benchmarks/RESULTS.md).


def load_data(d: DataConfig, device: str) -> "DataSplits":
    """`trainers.loop.load_data`, imported on first use (see above)."""
    from trainers.loop import load_data as _load_data
    return _load_data(d, device)


# Tune reuses a worker process for trial after trial (reuse_actors=True), and every trial of a
# search reads the same split: keep the last one loaded, per process, instead of loading the
# dataset again for each trial (1.4-2 s per trial for digits here, more for CIFAR). One entry
# only, so a worker never holds two datasets.
_DATA_CACHE: dict[tuple, DataSplits] = {}


def cached_data(d: DataConfig, device: str) -> DataSplits:
    """`load_data(d, device)`, reused while the dataset settings and device stay the same.

    Training only reads the tensors (batches are gathered copies), so trials can share them.
    """
    key = (d.name, d.data_dir, d.split, d.val_fraction, d.train_fraction, d.split_seed, d.synthetic_train_size,
           d.synthetic_test_size, d.synthetic_num_classes, str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # drop the old dataset before loading the new one
        _DATA_CACHE[key] = load_data(d, device)
    return _DATA_CACHE[key]


def annealing_branch(space: Space, epochs: int, trial_id: str = ""):
    """The `after_epoch` hook that branches at this trial's ASHA rungs, or None (FIFO, or
    `search.branch_epochs` 0). The rungs are those of the trial's bracket (`rungs.bracket_of`;
    max_t: the space's largest epochs) that come before the trial's own last epoch: there its
    schedule has annealed already."""
    s = space.search
    if s.scheduler != "asha" or not s.branch_epochs:
        return None
    from trainers.anneal import AnnealingBranch

    bracket = bracket_of(trial_id, s, space.max_epochs)
    at = [e for e in branching_rungs(s, space.max_epochs, bracket) if e < epochs]
    return AnnealingBranch(frozenset(at), s.branch_epochs) if at else None


def rung_result(metrics: dict) -> float | None:
    """What ASHA compares for this epoch (`RUNG_METRIC`): the branch's val_acc where one ran (a
    rung), else the trial's own val_acc. ASHA reads it at rung epochs and at a trial's last one
    only, but Tune wants the scheduler's metric in every result."""
    return metrics.get(ANNEALED_METRIC, metrics.get(METRIC))


def epoch_report(metrics: dict, epochs: int, costs: dict) -> dict:
    """What a trial reports to Tune after an epoch of its `epochs`: the loop's metrics, the
    config's costs, the branch epochs it spent, the rung result and its status (the simulator
    of benchmarks/simulate.py reports through this too)."""
    from trainers.metric_names import BRANCH_EPOCHS
    from trainers.loop import STATUS_NONFINITE

    out = {k: v for k, v in metrics.items() if k != "status"} | costs
    out.setdefault(BRANCH_EPOCHS, 0.0)
    out[RUNG_METRIC] = rung_result(metrics)
    if metrics.get("status") == STATUS_NONFINITE:
        out.update({METRIC: 0.0, RUNG_METRIC: 0.0,  # bad, not a crash
                    STATUS_KEY: TrialStatus.NONFINITE})
    else:
        out[STATUS_KEY] = (TrialStatus.COMPLETED if metrics["epoch"] >= epochs
                           else TrialStatus.RUNNING)
    return out


def storage_path(ctx) -> str:
    """Where Tune keeps this search's trials (`<storage>/<experiment>`), to name in an error."""
    try:
        return ctx.get_storage().experiment_fs_path
    except Exception:  # not in a Tune trial, or a Tune without it
        return "the search's storage"


def train_trial(config: dict, space: Space) -> None:
    """Tune function trainable (bind `space` with `tune.with_parameters`)."""
    import torch

    from trainers.checkpoint import CHECKPOINT_NAME
    from trainers.disk_full import disk_full, is_disk_full
    from trainers.loop import train

    ctx = tune.get_context()
    resources = ctx.get_trial_resources().required_resources if ctx else {}
    cpus = max(1, int(resources.get("CPU", 1)))
    if resources.get("GPU", 0) > 0 and not torch.cuda.is_available():
        # Never train on the CPU in silence when the search planned a GPU for this trial.
        raise RuntimeError(f"this trial was given {resources['GPU']:g} GPU by Ray, but torch "
                           "sees no CUDA device (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}); check the "
                           "node's driver and torch build, or use --gpus-per-trial 0")
    device = "cuda" if resources.get("GPU", 0) > 0 else "cpu"
    torch.set_num_threads(cpus)  # the trial's CPU share, not every core of the node

    # The price travels with every result: a multi-objective searcher reads it from the last.
    costs = {k: v for k, v in config.items() if k.startswith("cost.")}
    if not config.get("budget_ok", True):
        tune.report({METRIC: 0.0, RUNG_METRIC: 0.0, "epoch": space.max_epochs,
                     STATUS_KEY: TrialStatus.REJECTED, **costs})
        return

    workdir = Path(tempfile.mkdtemp(prefix="gunn-trial-"))
    try:
        cfg = runtime_config(trial_config(space, config), device=device,
                             out_dir=str(workdir / "run"), num_threads=cpus)
        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                resume = workdir / CHECKPOINT_NAME
                shutil.copy(Path(d) / CHECKPOINT_NAME, resume)
        data = cached_data(cfg.data, device)  # once per worker process, onto its device
        # The cores of slots the search's end left idle (spare_cpus.py), during an epoch too.
        lent = LentThreads(ctx.get_experiment_name(), cpus) if ctx and device == "cpu" else None

        branch = annealing_branch(space, cfg.epochs, ctx.get_trial_id() if ctx else "")

        def on_epoch(metrics: dict, ckpt_path: Path | None) -> bool:
            out = epoch_report(metrics, cfg.epochs, costs)
            ckpt = tune.Checkpoint.from_directory(str(ckpt_path.parent)) if ckpt_path else None
            try:
                tune.report(out, checkpoint=ckpt)
            except OSError as e:  # Tune copies the checkpoint into the search's storage
                if not is_disk_full(e):
                    raise
                raise disk_full(f"a checkpoint to {storage_path(ctx)}", e) from None
            return False

        hooks = [h for h in (faults.step_hook(ctx.get_trial_id()) if ctx else None, lent) if h]

        def on_step(epoch: int, step: int, model) -> None:
            for hook in hooks:
                hook(epoch, step, model)

        try:
            train(cfg, on_epoch=on_epoch, resume=resume, data=data, log=lambda m: None,
                  on_step=on_step if hooks else None, after_epoch=branch)
        except torch.cuda.OutOfMemoryError as e:
            first = first_line(e, "CUDA out of memory")
            tune.report({METRIC: 0.0, RUNG_METRIC: 0.0, "epoch": 0, STATUS_KEY: TrialStatus.OOM,
                         "error": first[:250]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
