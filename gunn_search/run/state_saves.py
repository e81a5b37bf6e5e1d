"""Tune's experiment-state saves: every second, yet never more than ~5 % of the driver's time.

The search has Tune save its experiment state every second (TUNE_GLOBAL_CHECKPOINT_S=1,
docs/runtime.md: a killed driver then loses at most about a second of finished trials). A save
writes the whole experiment, every trial's state (~22 KB each) and the pickled Optuna study, so
its time grows with the trial count: once a second, that made the driver's CPU per trial grow
with the search (0.095 s in the first quarter of a 384-trial search, 0.176 s in the last, on
the 2-core VM; benchmarks/search_growth.py). Tune's own "auto" period bounds the saves to 1/20 of
the time (the period is 19x the last save's time) but never goes under 10 s. `adapt_state_saves`
keeps the configured period (1 s) as the floor and stretches it to 19x the last save's time once
a save takes longer than 1/19 s: Tune's bound, with our floor.

It wraps a private method of Ray Tune (`_ExperimentCheckpointManager.sync_up_experiment_state`,
Ray 2.60); when that is not there, Tune's fixed period stays as it was. That class, its
attributes and Ray Train's `_upload_to_fs_path` below are reached through
`gunn_search.private_names`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import shutil
import sys
import time

from gunn_search import private_names as pn
from gunn_search.run import timing

SHARE = 19  # period / save time, as Tune's "auto" mode: saves take at most 1/20 of the time


def adapt_state_saves() -> bool:
    """Make Tune's save period max(configured, SHARE x last save's time); True if in place."""
    cls = pn.checkpoint_manager()  # None: not the Tune this was written against
    orig = getattr(cls, "sync_up_experiment_state", None)
    if orig is None or getattr(orig, "_gunn_adaptive", False):
        return orig is not None

    @functools.wraps(orig)
    def sync_up_experiment_state(self, save_fn, force=False, wait=False):
        floor = self.__dict__.setdefault("_gunn_floor", pn.checkpoint_period(self))

        def timed_save():
            t0 = time.monotonic()
            try:
                save_fn()
            finally:
                took = time.monotonic() - t0
                if not pn.auto_checkpoint(self):  # "auto" adapts on its own
                    pn.set_checkpoint_period(self, max(floor, SHARE * took))
                timing.add("tune_state_save", took, pn.checkpoint_period(self))

        return orig(self, timed_save, force=force, wait=wait)

    sync_up_experiment_state._gunn_adaptive = True
    cls.sync_up_experiment_state = sync_up_experiment_state
    return True


# --- Saves that a full disk cannot break ------------------------------------------------------
# Tune writes its state into a staging folder and copies that folder onto the storage path
# file by file, each file rewritten in place (`ray.train._internal.storage._upload_to_fs_path`,
# Ray 2.60). A disk that fills during the copy leaves a truncated experiment_state-*.json there,
# and a restore fails on it. On a local storage path each file is copied to a temporary name
# and renamed over the old one instead: a file is the old one or the new one, never half. A
# copy that finds the disk full keeps the previous state, says so once in one line (until a
# save goes through again), and is retried at the next save.

_full: list[str] = []  # the file last refused for want of room, while the disk stays full


def atomic_state_uploads() -> bool:
    """Make Tune's uploads to a local storage path atomic per file; True if in place."""
    try:
        import pyarrow.fs as pafs
    except ImportError:
        return False
    orig = pn.upload_to_fs_path()
    if orig is None or getattr(orig, "_gunn_atomic", False):
        return orig is not None

    @functools.wraps(orig)
    def upload(local_path, fs, fs_path, exclude=None):
        if not isinstance(fs, pafs.LocalFileSystem) or not os.path.isdir(local_path):
            return orig(local_path, fs, fs_path, exclude)
        try:
            for src, rel in _files(local_path, exclude):
                _replace_with_copy(src, os.path.join(fs_path, rel))
        except OSError as e:
            from trainers.disk_full import is_disk_full
            if not is_disk_full(e):
                raise
            if not _full:
                print(f"gunn-search: disk full: no room to write {e.filename or fs_path} "
                      f"({os.strerror(e.errno)}); Tune's last saved state is kept, saving "
                      "again once there is room", file=sys.stderr, flush=True)
            _full[:] = [str(e.filename)]
            return
        if _full:
            print("gunn-search: Tune's state saved again", file=sys.stderr, flush=True)
            _full.clear()

    upload._gunn_atomic = True
    pn.set_upload_to_fs_path(upload)
    return True


def _files(root: str, exclude):
    """(path, path relative to root) of the files under root that no `exclude` pattern
    matches (Tune's patterns match relative paths, as fnmatch)."""
    for d, _, names in os.walk(root):
        for name in names:
            src = os.path.join(d, name)
            rel = os.path.relpath(src, root)
            if not exclude or not any(fnmatch.fnmatch(rel, p) for p in exclude):
                yield src, rel


def _replace_with_copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # shutil names the source file; the one refused is dst
            raise OSError(e.errno, e.strerror, dst) from None
        raise
