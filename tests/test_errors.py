"""One error base per layer and one formatter: every user-facing error is one line
``prog: error: message`` on stderr, exit 2 (a full disk, not the user's mistake, exit 1)."""

from __future__ import annotations

import errno
import os

import pytest

from gunn_search import errors as search_errors
from gunn_search.errors import USER_ERRORS, ExportError, SearchError
from trainers import errors
from trainers.checkpoint import CheckpointError
from trainers.config import ConfigError, DataError
from trainers.disk_full import DiskFullError, disk_full
from trainers.errors import TrainerError, UsageError, error_line, report


def test_the_trainers_errors_share_one_base():
    for cls in (UsageError, ConfigError, DataError, CheckpointError, DiskFullError):
        assert issubclass(cls, TrainerError), cls
        assert cls.__module__ == "trainers.errors", cls  # defined once, where the base is
    assert issubclass(DiskFullError, OSError)  # still caught as the OSError it is


def test_the_searchs_errors_share_one_base_and_usage_error_is_one_class():
    assert issubclass(ExportError, SearchError)
    assert search_errors.UsageError is UsageError
    assert USER_ERRORS == (TrainerError, SearchError)


@pytest.mark.parametrize("e, line", [
    (ConfigError("must be >= 1", file="run.yaml", field="epochs"),
     "gunn-train: error: run.yaml: epochs: must be >= 1"),
    (UsageError("--resume-changed needs --resume"),
     "gunn-train: error: --resume-changed needs --resume"),
    (DataError("no CIFAR-10 in /data (pass --download)"),
     "gunn-train: error: no CIFAR-10 in /data (pass --download)"),
    (CheckpointError("ck.pt: no checkpoint there"), "gunn-train: error: ck.pt: no checkpoint there"),
])
def test_error_line_is_prog_error_message(e, line):
    assert error_line("gunn-train", e) == line


def test_error_line_keeps_a_message_on_one_line_and_adds_what_follows():
    assert error_line("gunn-search", SearchError("first\nsecond")) == \
        "gunn-search: error: first second"
    e = disk_full("/out/checkpoint.pt", OSError(errno.ENOSPC, "No space left on device"))
    assert error_line("gunn-train", e, "; free space and start again") == (
        "gunn-train: error: disk full: no room to write /out/checkpoint.pt "
        "(No space left on device); free space and start again")


def test_report_prints_the_line_on_stderr_and_returns_the_exit_code(capsys):
    assert report("gunn-search", ExportError("experiment 'x' not found")) == 2
    assert report("gunn-train", ConfigError("no such file", file="a.yaml")) == 2
    full = disk_full("/out/ck.pt", OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert report("gunn-train", full) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "gunn-search: error: experiment 'x' not found",
        "gunn-train: error: a.yaml: no such file",
        f"gunn-train: error: disk full: no room to write /out/ck.pt ({os.strerror(errno.EDQUOT)})",
    ]


def test_an_error_of_neither_layer_prints_the_same_way_with_exit_2(capsys):
    assert report("gunn-search", ValueError("odd")) == errors.EXIT_USER_ERROR == 2
    assert capsys.readouterr().err == "gunn-search: error: odd\n"


def test_first_line_cuts_a_message_to_its_first_line_and_shown_line_finds_a_tracebacks_error():
    from gunn_search.track.store import shown_line
    from trainers.errors import first_line

    assert first_line(ValueError("\n  bad value\nmore detail")) == "bad value"
    assert first_line(KeyError()) == "KeyError"  # no message: its type
    assert first_line(RuntimeError(""), "CUDA out of memory") == "CUDA out of memory"
    assert first_line("one\ntwo") == "one" and first_line("") == "unknown error"
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\n    f()\nValueError: boom\n'
    assert shown_line(tb) == "ValueError: boom"
