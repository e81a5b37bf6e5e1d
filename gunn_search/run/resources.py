"""How many GPUs a trial gets: `resources.gpus_per_trial: auto` (the default) or a number.

`auto` gives every trial a GPU where the Ray cluster has GPUs, packed so that `max_concurrent`
trials share them: a whole GPU each when there are at least as many GPUs as trials at a time,
else an equal fraction (1/2, 1/3, ...) so that whole numbers of trials fit on each GPU. On a
machine or cluster without GPUs it is 0: the trials train on their CPUs.

``--gpus-per-trial`` is read here too (`gpus_value`, `gpus_request`, `check_gpus_here`): the
commands' flags and the Python API take it alike, so it sits below both.
"""

from __future__ import annotations

import math
import os
from glob import glob

from gunn_search.errors import UsageError

AUTO = "auto"


def gpus_per_trial(requested: float | str, cluster_gpus: float, max_concurrent: int) -> float:
    """The GPUs each trial asks Ray for."""
    if requested != AUTO:
        return float(requested)
    gpus = int(cluster_gpus)  # Ray counts whole devices; a fraction of one is not a device
    if gpus <= 0:
        return 0.0
    if gpus >= max_concurrent:
        return 1.0
    return 1.0 / math.ceil(max_concurrent / gpus)


def resolve(requested: float | str, max_concurrent: int, log) -> float:
    """The GPUs each trial asks Ray for on the cluster joined (`ray.init` done), said through
    ``log`` in one line."""
    import ray

    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    log("resources: " + describe(requested, cluster_gpus, max_concurrent))
    return gpus_per_trial(requested, cluster_gpus, max_concurrent)


def local_gpu_count() -> int:
    """GPUs this machine shows, without importing torch or Ray (for --dry-run): the devices in
    CUDA_VISIBLE_DEVICES when it is set, else the NVIDIA device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob("/dev/nvidia[0-9]*"))


def describe(requested: float | str, cluster_gpus: float, max_concurrent: int) -> str:
    """One line saying what a trial gets and why."""
    per = gpus_per_trial(requested, cluster_gpus, max_concurrent)
    if requested != AUTO:
        return f"{per:g} GPU per trial (as set)"
    if per == 0:
        return "auto: no GPU found, trials train on the CPU"
    return (f"auto: {per:g} GPU per trial ({int(cluster_gpus)} GPU(s), {max_concurrent} trials "
            "at a time)")


def gpus_value(text: str) -> float | str:
    """``--gpus-per-trial``'s text as the value `resources.gpus_per_trial` takes: auto or a
    number (ValueError otherwise). Whether it is a good one is the key's rule (below)."""
    if text == AUTO:
        return text
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected auto or a number (got {text!r})") from None


def gpus_request(text: str) -> float | str:
    """``--gpus-per-trial`` of a command without a space file (ablate): `gpus_value`, checked by
    the rule of the space file's `resources.gpus_per_trial` (`space.schema.Resources`);
    UsageError (one line) otherwise."""
    from pydantic import ValidationError

    from trainers.config_errors import describe_error

    from gunn_search.space.schema import Resources

    try:
        return Resources(gpus_per_trial=gpus_value(text)).gpus_per_trial
    except ValueError as e:  # pydantic's ValidationError is a ValueError too
        problem = (describe_error(e.errors()[0])[1] if isinstance(e, ValidationError)
                   else str(e))
        raise UsageError(f"--gpus-per-trial: {problem}") from None


def check_gpus_here(gpus: float | str, address: str | None) -> None:
    """A GPU asked for on this machine (no cluster to join) must be there: never train on the
    CPU in silence. A cluster's GPUs may be on other nodes, so it is not checked then."""
    if gpus == AUTO or gpus <= 0 or address:
        return
    import torch
    if not torch.cuda.is_available():
        raise UsageError(f"--gpus-per-trial {gpus:g}: this machine has no GPU (use "
                         "--gpus-per-trial 0 to train on the CPU)")
