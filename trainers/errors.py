"""Every error the trainer shows its user, and the one line a command prints for any of them.

`TrainerError` is the base of what is wrong with what the trainer was given (a flag, a config, a
dataset, a checkpoint) or of a condition the user must fix (a full disk). Its str() is one line
naming what and where; a command prints it with `error_line` (``prog: error: message``) and
exits with its `exit_code`: 2 for a mistake, 1 for a full disk (the last checkpoint is kept,
nothing is the user's fault). The search's own errors (`gunn_search.errors`) are printed by the
same `error_line`.

Plain Python, nothing imported: the commands catch these before torch, Ray or MLflow is loaded.
"""

from __future__ import annotations

import sys

EXIT_USER_ERROR = 2  # a mistake in what the user gave: fix it and run again


class TrainerError(Exception):
    """Bad input to the trainer, or a condition the user must fix; str() is one line."""

    exit_code = EXIT_USER_ERROR


class UsageError(TrainerError):
    """A bad flag or flag combination (of `gunn-train` or `gunn-search`); one line."""


class ConfigError(TrainerError):
    """A bad settings file or value; str() is one line: ``file: field: problem``."""

    def __init__(self, problem: str, file: str | None = None, field: str | None = None):
        self.problem = " ".join(str(problem).split("\n"))
        self.file = file
        self.field = field
        super().__init__(str(self))

    def with_file(self, file: str) -> "ConfigError":
        return type(self)(self.problem, file=file, field=self.field)

    def __str__(self) -> str:
        return ": ".join(p for p in (self.file, self.field, self.problem) if p)


class DataError(TrainerError):
    """User-facing data problem; str(e) is ONE line naming the directory/dataset and the fix.

    Raised by `trainers.data`; defined here, without torch, so a CLI can catch it without
    importing torch.
    """


class CheckpointError(TrainerError):
    """A checkpoint that is missing, corrupt or not ours; str() is one line naming the file."""


class DiskFullError(TrainerError, OSError):
    """A write that found no room (no space, quota, file-size limit); str() is one line naming
    where. The file it would have replaced is untouched. Still an OSError (errno kept); made by
    `trainers.disk_full.disk_full`."""

    exit_code = 1  # not the user's mistake: free space and resume

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """An error's first non-empty line (a library's message often goes on with details), else
    `default`, else the exception's type name: the one place a message is cut to a line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    if lines:
        return lines[0]
    if default is not None:
        return default
    return type(error).__name__ if isinstance(error, BaseException) else "unknown error"


def error_line(prog: str, e: BaseException, then: str = "") -> str:
    """The one line a command prints for a user-facing error: ``prog: error: message`` and
    `then` (what is kept, how to go on), a message of several lines joined into one."""
    return f"{prog}: error: {' '.join(str(e).splitlines())}{then}"


def report(prog: str, e: BaseException, then: str = "") -> int:
    """Print `error_line` on stderr; the exit code for `e` (its `exit_code`, else 2)."""
    print(error_line(prog, e, then), file=sys.stderr)
    return getattr(e, "exit_code", EXIT_USER_ERROR)
