"""Ctrl-C and a scheduler's SIGTERM: a state of their own, neither a failure nor an end.

The first SIGINT or SIGTERM while a Tune run is in progress stops it the way Tune's own Ctrl-C
handler does: the run's loop ends, Tune saves its experiment state one last time (what
`--resume` restores) and stops the trials. Tune handles SIGINT only, and a SIGTERM would
kill the driver at once with Python's default; so both go through the handler here, which
records which signal came and when, then calls Tune's stop function (Tune registers it on
SIGUSR1 for every run, ray/tune/tune.py `_setup_signal_catching`; its SIGINT registration is
turned off with TUNE_DISABLE_SIGINT_HANDLER so that the signal reaches us first). Ray's own
processes start in a session of their own (`sheltered_ray_node`), so that a signal sent to the
command's process group reaches the driver and not the GCS the driver needs to stop gracefully.

A second signal, or a first one outside a Tune run (starting up, `gunn-train`), raises
KeyboardInterrupt at once: what a resume needs is already on disk (Tune's state saved every
second, checkpoints written to a temporary name and renamed).

The command then exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), what
a shell reports for a process the signal ended, so a scheduler or a script sees it was cut.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Tune's stop function (ray 2.60, ray/tune/tune.py), found on SIGUSR1 while a run is in progress.
TUNE_STOP_FN = "signal_interrupt_tune_run"


@dataclass(frozen=True)
class Interrupt:
    """The first signal that asked the command to stop."""

    signum: int
    at: str  # UTC, ISO 8601 to the second

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_prog = "gunn-search"
_installed = False
_received: Interrupt | None = None
_in_tune_run = False
_abort_hooks: list[Callable[[], None]] = []


def install(prog: str) -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only; elsewhere nothing changes)."""
    global _prog, _received, _installed
    if threading.current_thread() is not threading.main_thread():
        return
    _prog, _received, _installed = prog, None, True
    _abort_hooks.clear()
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    reclaim()


@contextlib.contextmanager
def installed(prog: str):
    """`install` for the length of a call (the Python API's): the caller's handlers, and Tune's
    SIGINT switch, are put back after it, as a notebook expects of a function."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    switch = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    install(prog)
    try:
        yield
    finally:
        _installed = False
        for s, handler in saved.items():
            signal.signal(s, handler)
        if switch is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = switch


def reclaim() -> None:
    """Take SIGINT and SIGTERM back after `ray.init`, which sets a SIGTERM handler of its own
    (sys.exit) and whose core worker installs a C++ one that logs and aborts (exit -6, no
    state saved: seen with Ray 2.60)."""
    if _installed and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _handle)


def received() -> Interrupt | None:
    """The first SIGINT/SIGTERM since `install`, or None."""
    return _received


@contextlib.contextmanager
def tune_run():
    """Around `Tuner.fit()`: a first signal inside stops the run gracefully (see above)."""
    global _in_tune_run
    _in_tune_run = True
    try:
        yield
    finally:
        _in_tune_run = False


@contextlib.contextmanager
def sheltered_ray_node():
    """Around `ray.init` of a Ray instance of our own: its processes (GCS, raylet, ...) start in
    a session of their own. In the driver's process group, a SIGTERM to the group (what a
    scheduler or `kill -- -PGID` sends) killed the GCS before the driver could save its state,
    and the driver exited 1 a minute later ("Failed to connect to GCS"); Ray blocks SIGINT in
    them itself, not SIGTERM. They still die with the driver through Ray's fate sharing
    (PR_SET_PDEATHSIG), so only where Ray says the kernel supports it."""
    from gunn_search import private_names as pn

    orig = pn.console_popen()
    if orig is None or not pn.fate_sharing_supported():
        yield
        return

    class Sheltered(orig):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    pn.set_console_popen(Sheltered)  # looked up by name when Ray starts a process
    try:
        yield
    finally:
        pn.set_console_popen(orig)


def on_abort(hook: Callable[[], None]) -> None:
    """Have `abort` call `hook` (a tracker closing its runs as interrupted)."""
    if hook not in _abort_hooks:
        _abort_hooks.append(hook)


def abort() -> None:
    """After a KeyboardInterrupt cut a run short: each hook once, none allowed to raise (one
    more signal still stops them: KeyboardInterrupt is no Exception)."""
    hooks = list(_abort_hooks)
    _abort_hooks.clear()
    for hook in hooks:
        try:
            hook()
        except Exception as e:
            print(f"{_prog}: while stopping: {type(e).__name__}: {e}", file=sys.stderr)


def _handle(signum, frame) -> None:
    global _received
    first = _received is None
    if first:
        now = datetime.datetime.now(datetime.timezone.utc)
        _received = Interrupt(signum, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    name = signal.Signals(signum).name
    stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if first and _in_tune_run and getattr(stop, "__name__", "") == TUNE_STOP_FN:
        print(f"{_prog}: {name}: stopping and saving the state to resume from (a second "
              "Ctrl-C or SIGTERM stops at once)", file=sys.stderr, flush=True)
        stop(signum, frame)
        return
    if not first:
        print(f"{_prog}: {name} again: stopping at once", file=sys.stderr, flush=True)
    raise KeyboardInterrupt(name)
