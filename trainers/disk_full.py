"""A write that finds no room: one rule for the trainer, the trials and the search's driver.

No torch here: the driver (Tune's state saves, the search's own state file) uses it too, and
the driver never imports torch.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from trainers.errors import DiskFullError


# No space left, over quota, over the process's file-size limit (RLIMIT_FSIZE).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_FULL


def disk_full(where: str | Path, e: OSError) -> DiskFullError:
    """The one-line error for a write to `where` that `e` refused for want of room."""
    return DiskFullError(e.errno, f"disk full: no room to write {where} "
                                  f"({os.strerror(e.errno) if e.errno else e})")
