"""The training loop: `train(config, on_epoch)` and `evaluate`.

The whole dataset sits on the training device as uint8; batches are drawn, augmented and
normalised there. Runs are seeded and resume exactly from a checkpoint. A per-epoch callback
receives the metrics and the path of the checkpoint just written, and can stop training: this
is how the search reports to Ray Tune without the trainer knowing about it.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from trainers.checkpoint import (CHECKPOINT_NAME, CheckpointError, describe_changes,
                                 load_checkpoint, resume_config_changes, save_checkpoint)
from trainers.disk_full import disk_full, is_disk_full
from trainers.config import DataConfig, TrainConfig
from trainers.data import DataSplits, augment, batches, load_dataset, normalize
from trainers.model.network import GUNNNet, build_model
from trainers.schedule import lr_at

# Callback: (metrics of the epoch just finished, checkpoint path or None) -> True to stop.
EpochCallback = Callable[[dict, "Path | None"], "bool | None"]
# Hook before each training step: (epoch (1-based), step within the epoch, model). Negative
# steps are an annealing branch's after that epoch (trainers/anneal.py): -1 its first step.
StepHook = Callable[[int, int, torch.nn.Module], None]
# Hook after each epoch's evaluation, before its checkpoint: extra metrics of that epoch
# (trainers/anneal.py's branch). It may read the live model and optimizer, never change them.
AfterEpoch = Callable[["EpochState"], dict]

STATUS_COMPLETED = "completed"
STATUS_STOPPED = "stopped"
STATUS_NONFINITE = "non-finite loss"

_FINITE_CHECK_EVERY = 25  # steps between host syncs to check the loss is finite


@dataclass
class TrainResult:
    status: str
    epochs_completed: int
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None
    message: str = ""

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def best(self) -> dict:
        """The best evaluation accuracy of the run and its epoch, `{"best_val_acc": a,
        "best_val_acc_epoch": e}` (`test_` on a final split), the earliest epoch of a tie; {}
        before any. The authors report the best test accuracy of a run; `final` is the last."""
        keys = [k for k in self.final if k.endswith("_acc") and k != "train_acc"]
        if not keys:
            return {}
        key, best = keys[0], None
        for m in self.history:
            v = m.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v) and (best is None or v > best[key]):
                best = m
        return {f"best_{key}": best[key], f"best_{key}_epoch": best["epoch"]} if best else {}


class NonFiniteLoss(Exception):
    pass


@dataclass(frozen=True)
class EpochState:
    """A run as it stands after an epoch: what an `AfterEpoch` hook reads, and the means to train
    and evaluate a model the way the run does (same augmentation, batch size, precision)."""

    epoch: int  # epochs trained (1-based number of the epoch just finished)
    step: int  # optimizer steps taken
    lr: float  # the lr of the last step
    cfg: TrainConfig
    data: DataSplits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    steps_per_epoch: int
    batch_size: int
    flip: bool
    amp: object  # the autocast context, or a nullcontext
    channels_last: bool
    on_step: StepHook | None = None

    def batch(self, idx: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return training_batch(self.data, idx, gen, self.flip, self.cfg.data.cyclic_shift,
                              self.device, self.channels_last)

    def evaluate(self, model: torch.nn.Module) -> tuple[float, float]:
        return evaluate(model, self.data.eval_x, self.data.eval_y, self.data.mean, self.data.std,
                        self.cfg.eval_batch_size, self.amp, self.channels_last)


def training_batch(data: DataSplits, idx: torch.Tensor, gen: torch.Generator, flip: bool,
                   cyclic_shift: bool, device: torch.device,
                   channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented images and labels of training indices `idx` (random draws from `gen`)."""
    idx = idx.to(device)
    x = augment(data.train_x[idx], data.mean, data.std, gen, flip=flip, cyclic_shift=cyclic_shift)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, data.train_y[idx]


def sgd_step(forward, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             amp) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on (x, y) at the optimizer's current lr: (loss, logits), detached."""
    with amp:
        out = forward(x)
        loss = F.cross_entropy(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), out.detach()


def load_data(d: DataConfig, device: str | torch.device = "cpu") -> DataSplits:
    """The dataset a `DataConfig` describes, on `device`."""
    return load_dataset(d.name, d.data_dir, split=d.split, val_fraction=d.val_fraction,
                        train_fraction=d.train_fraction,
                        seed=d.split_seed, download=d.download, device=device,
                        synthetic_train_size=d.synthetic_train_size,
                        synthetic_test_size=d.synthetic_test_size,
                        synthetic_num_classes=d.synthetic_num_classes)


def check_data_present(d: DataConfig) -> None:
    """Load a dataset that lives in files (CIFAR) once, on the CPU, before a search or an
    ablation starts Ray: a missing or damaged dataset is then one line, not an error in every
    trial. Bundled and synthetic data cannot be missing."""
    if d.name in ("cifar10", "cifar100"):
        load_data(d, "cpu")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def applies(setting: bool | str, device: torch.device) -> bool:
    """Whether a speed-up set to `setting` (`amp`, `channels_last`, `compile`) is used on `device`:
    true means on CUDA only, "always" on any device (how the tests reach these paths on a CPU)."""
    return setting == "always" or (setting is True and device.type == "cuda")


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(cfg: TrainConfig, on_epoch: EpochCallback | None = None,
          resume: str | Path | None = None, data: DataSplits | None = None,
          log: Callable[[str], None] = log_stderr, on_step: StepHook | None = None,
          resume_changed: bool = False, after_epoch: AfterEpoch | None = None) -> TrainResult:
    """Train `cfg.model` on `cfg.data` for `cfg.epochs`, optionally resuming from a checkpoint.

    Writes `checkpoint.pt` (atomically) and `metrics.jsonl` to `cfg.out_dir` after every epoch
    when out_dir is set. Returns the status (completed / stopped by the callback / non-finite
    loss) and the per-epoch history. `on_step` runs before every step (fault injection, probes);
    `after_epoch` after each epoch's evaluation, its metrics joining the epoch's.

    Resuming refuses (CheckpointError, one line naming what differs) a config that differs from
    the checkpoint's in more than `checkpoint.RESUME_HARMLESS` (where and how fast it runs);
    `resume_changed` accepts it, says so through `log` and records it in the checkpoint
    (`config_changes`: the epoch it resumed at and the changes, one entry per such resume).
    """
    device = resolve_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    cuda = device.type == "cuda"
    use_amp, channels_last, use_compile = (applies(v, device) for v in
                                           (cfg.amp, cfg.channels_last, cfg.compile))
    if data is None:
        data = load_data(cfg.data, device)
    torch.manual_seed(cfg.seed)
    spec = cfg.model.network_spec(data.num_classes)
    model: GUNNNet = build_model(spec, gunn_mode=cfg.model.gunn_mode).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                          weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov,
                          dampening=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # data order and augmentation
    history: list[dict] = []
    start_epoch, step = 0, 0
    changed: list[dict] = []  # resumes that changed the config, kept in every checkpoint
    if resume is not None:
        # On the CPU: RNG states must be CPU ByteTensors (set_rng_state refuses CUDA tensors);
        # load_state_dict copies the weights and optimizer state onto the device.
        state = load_checkpoint(resume, map_location="cpu")
        changes = resume_config_changes(state.get("config"), cfg)
        if changes and not resume_changed:
            raise CheckpointError(
                f"{resume}: trained with another config ({describe_changes(changes)}); resume "
                f"with the same config, or accept the change with --resume-changed")
        changed = list(state.get("config_changes", []))
        if changes:
            log(f"resuming at epoch {state['epoch']} with a changed config: "
                f"{describe_changes(changes, most=len(changes))}")
            changed.append({"epoch": state["epoch"], "changes": changes})
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        gen.set_state(state["rng"]["data"])
        if cuda and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        log(f"resumed from {resume} at epoch {start_epoch}")
        if history and history[-1].get("status") == STATUS_NONFINITE:
            return TrainResult(STATUS_NONFINITE, start_epoch, history, None, "loss was non-finite")

    forward = torch.compile(model) if use_compile else model
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if use_amp else nullcontext()
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    flip = cfg.data.flip if cfg.data.flip is not None else data.name != "digits"
    n_train = data.train_x.shape[0]
    bs = min(cfg.batch_size, n_train)
    steps_per_epoch = n_train // bs  # drop the ragged last batch: tiny batches upset BatchNorm
    total_steps = steps_per_epoch * cfg.epochs
    status, message, ckpt_path = STATUS_COMPLETED, "", None
    if start_epoch >= cfg.epochs:
        return TrainResult(STATUS_COMPLETED, start_epoch, history, None, "already complete")

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        lr = cfg.optim.lr
        last_note = t0
        try:
            for i, idx in enumerate(batches(n_train, bs, gen, drop_last=True)):
                if on_step is not None:
                    on_step(epoch + 1, i, model)
                lr = lr_at(step, total_steps, cfg.optim.lr, cfg.schedule, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                x, y = training_batch(data, idx, gen, flip, cfg.data.cyclic_shift, device,
                                      channels_last)
                loss, out = sgd_step(forward, opt, x, y, amp)
                step += 1
                seen += y.shape[0]
                loss_sum += loss * y.shape[0]
                correct += (out.argmax(1) == y).sum()
                if (i + 1) % _FINITE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                    raise NonFiniteLoss
                now = time.perf_counter()
                if now - last_note > 30:
                    log(f"epoch {epoch + 1}/{cfg.epochs}: {i + 1}/{steps_per_epoch} steps")
                    last_note = now
            if not torch.isfinite(loss_sum):
                raise NonFiniteLoss
        except NonFiniteLoss:
            status, message = STATUS_NONFINITE, f"non-finite training loss in epoch {epoch + 1}"
        train_seconds = time.perf_counter() - t0
        eval_loss, eval_acc = evaluate(model, data.eval_x, data.eval_y, data.mean, data.std,
                                       cfg.eval_batch_size, amp, channels_last)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_acc": float(correct) / max(seen, 1),
            f"{data.eval_name}_loss": eval_loss,
            f"{data.eval_name}_acc": eval_acc,
            "lr": lr,
            "epoch_seconds": time.perf_counter() - t0,
            "images_per_s": seen / train_seconds if train_seconds > 0 else 0.0,
            "peak_memory_bytes": peak_memory_bytes(device),
        }
        if not cuda:  # a search may lend a trial more threads mid-run (gunn_search/run/spare_cpus.py)
            metrics["num_threads"] = torch.get_num_threads()
        if status == STATUS_NONFINITE:
            metrics["status"] = STATUS_NONFINITE
        elif after_epoch is not None:
            metrics.update(after_epoch(EpochState(
                epoch + 1, step, lr, cfg, data, model, opt, device, steps_per_epoch, bs, flip,
                amp, channels_last, on_step)))
        history.append(metrics)
        if out_dir is not None:
            ckpt_path = save_checkpoint({
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "epoch": epoch + 1, "step": step, "history": history,
                "config": cfg.model_dump(mode="json"), "spec": spec.to_dict(),
                "config_changes": changed,
                "rng": {"torch": torch.get_rng_state(), "data": gen.get_state(),
                        "cuda": torch.cuda.get_rng_state(device) if cuda else None},
            }, out_dir / CHECKPOINT_NAME)
            write_metrics(history, out_dir / "metrics.jsonl")
        log(format_epoch(metrics, cfg.epochs, data.eval_name))
        stop = on_epoch(metrics, ckpt_path) if on_epoch is not None else False
        if status == STATUS_NONFINITE:
            log(f"stopping: {message}")
            break
        if stop:
            status, message = STATUS_STOPPED, f"stopped by callback after epoch {epoch + 1}"
            break
    return TrainResult(status, len(history), history, ckpt_path, message)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std,
             batch_size: int = 500, amp=None, channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on uint8 images `x` (eval mode, no augmentation)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for s in range(0, x.shape[0], batch_size):
        xb = normalize(x[s:s + batch_size], mean, std)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with amp or nullcontext():
            out = model(xb).float()
        yb = y[s:s + batch_size]
        loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
    model.train(was_training)
    n = max(x.shape[0], 1)
    return loss_sum / n, correct / n


def peak_memory_bytes(device: torch.device) -> int:
    """Peak CUDA memory allocated this epoch, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def write_metrics(history: list[dict], path: Path) -> None:
    """Rewrite metrics.jsonl from the history (so a resumed run never holds duplicate epochs)."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text("".join(json.dumps(m) + "\n" for m in history))
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise
    tmp.replace(path)


def format_epoch(m: dict, epochs: int, eval_name: str) -> str:
    return (f"epoch {m['epoch']}/{epochs}  train loss {m['train_loss']:.4f} acc {m['train_acc']:.4f}"
            f"  {eval_name} loss {m[f'{eval_name}_loss']:.4f} acc {m[f'{eval_name}_acc']:.4f}"
            f"  lr {m['lr']:.4g}  {m['epoch_seconds']:.1f}s  {m['images_per_s']:.0f} img/s")
