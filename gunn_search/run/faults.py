"""Fault injection for testing the search's failure handling (a failpoint, off by default).

`GUNN_SEARCH_FAULTS` holds a JSON list of faults, and `GUNN_SEARCH_FAULT_DIR` a directory
shared by the trials (it numbers trials in the order they start and counts how often each fault
fired, so a fault can fire once and let the retry succeed). A fault:

    {"kind": "raise" | "nonfinite" | "oom", "trial": 0, "epoch": 2, "step": 1, "times": 1}

raise: RuntimeError mid-epoch. nonfinite: the model's weights become NaN, so the loss does.
oom: torch.cuda.OutOfMemoryError (what a GPU raises), simulated on any device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

ENV_FAULTS = "GUNN_SEARCH_FAULTS"
ENV_DIR = "GUNN_SEARCH_FAULT_DIR"


def trial_ordinal(fault_dir: Path, trial_id: str) -> int:
    """The order in which this trial first started (stable across its retries)."""
    fault_dir.mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        f = fault_dir / f"trial-{i}"
        try:
            fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if f.read_text() == trial_id:
                return i
            i += 1
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(trial_id)
        return i


def _claim(fault_dir: Path, name: str, times: int) -> bool:
    """True (and one use recorded) if the fault called `name` may fire again."""
    for k in range(times):
        try:
            os.close(os.open(fault_dir / f"fired-{name}-{k}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            continue
    return False


def step_hook(trial_id: str) -> Callable | None:
    """A `trainers.train` step hook injecting the configured faults, or None when none are."""
    spec = os.environ.get(ENV_FAULTS)
    if not spec:
        return None
    fault_dir = Path(os.environ[ENV_DIR])
    ordinal = trial_ordinal(fault_dir, trial_id)
    faults = [f for f in json.loads(spec) if f.get("trial", 0) == ordinal]
    if not faults:
        return None
    import torch  # only in a trial that has faults to inject; the driver never needs it

    def hook(epoch: int, step: int, model: torch.nn.Module) -> None:
        for n, f in enumerate(faults):
            if epoch != f.get("epoch", 1) or step != f.get("step", 0):
                continue
            if not _claim(fault_dir, f"{ordinal}-{n}", int(f.get("times", 1))):
                continue
            kind = f["kind"]
            if kind == "raise":
                raise RuntimeError(f"injected fault in trial {ordinal} at epoch {epoch}")
            if kind == "oom":
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected fault)")
            if kind == "nonfinite":
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_(float("nan"))
    return hook
