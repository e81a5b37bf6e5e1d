"""Checkpoints: atomic writes, `weights_only=True` loads, and the config a resume may change.

A checkpoint holds only tensors and plain Python data (dicts, lists, numbers, strings), so it
loads with `torch.load(weights_only=True)`: a tampered file cannot run code on load.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

from trainers.config import ConfigError, TrainConfig, parse_config
from trainers.disk_full import disk_full, is_disk_full
from trainers.errors import CheckpointError, first_line


CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1

# What a resumed run may change without being told: where and how fast it runs, where the data
# files are, and how backward saves memory (the GUNN modes compute the same network), never what
# it trains (model, data, optimiser, schedule, epochs, batch size, seed, precision). Dotted paths;
# a section covers its keys.
RESUME_HARMLESS = ("device", "out_dir", "num_threads", "tracking", "eval_batch_size",
                   "data.data_dir", "data.download", "model.gunn_mode", "compile", "channels_last")


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write `state` to `path` atomically (temp file in the same directory + os.replace): a
    failed write, a full disk included (DiskFullError), leaves the previous checkpoint as it
    was."""
    path = Path(path)
    # Serialised in memory first: torch writing straight to a file on a full disk fails with
    # an unrelated message ("unexpected pos 704 vs 598"); a plain write says ENOSPC.
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint`; CheckpointError on any problem."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
        first = first_line(e)
        raise CheckpointError(f"{path}: not a loadable checkpoint (refused by "
                              f"weights_only=True or corrupt): {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a gunn-search checkpoint (format_version missing)")
    return state


def resume_config_changes(saved: dict | None, cfg: TrainConfig) -> list[str]:
    """`config_changes` from a checkpoint's config to `cfg`. The saved one is validated first,
    so a key added since the checkpoint was written reads as its default."""
    if isinstance(saved, dict):
        try:
            saved = parse_config(saved, "checkpoint").model_dump(mode="json")
        except ConfigError:
            pass  # a config this version no longer reads: compared as it is
    return config_changes(saved, cfg.model_dump(mode="json"))


def describe_changes(changes: list[str], most: int = 6) -> str:
    """The changes on one line, the first `most` of them."""
    more = len(changes) - most
    return "; ".join(changes[:most]) + (f"; and {more} more" if more > 0 else "")


def config_changes(saved: dict | None, current: dict,
                   harmless: tuple[str, ...] = RESUME_HARMLESS) -> list[str]:
    """`path: old -> new` for every dotted path of two configs (`TrainConfig.model_dump(mode=
    "json")`) whose values differ, leaving out the `harmless` paths; [] for a checkpoint that
    holds no config. A key one side lacks reads as null (a default added since the checkpoint;
    the caller compares validated configs, which have every key)."""
    if not isinstance(saved, dict):
        return []
    old, new = _flatten(saved), _flatten(current)
    out = []
    for path in list(new) + [p for p in old if p not in new]:  # in the config's own order
        if any(path == h or path.startswith(h + ".") for h in harmless):
            continue
        if old.get(path) != new.get(path):
            out.append(f"{path}: {_show(old.get(path))} -> {_show(new.get(path))}")
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Dotted paths to leaf values; lists of mappings (model.stages) by index, other lists whole."""
    out: dict[str, object] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, path + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(_flatten(x, f"{path}.{i}."))
        else:
            out[path] = v
    return out


def _show(v: object) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
