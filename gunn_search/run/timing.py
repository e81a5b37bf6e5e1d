"""Where the driver's time goes, on stderr when GUNN_SEARCH_TIMING=1 (benchmarks read it).

Off by default: a person running a search sees nothing of it. On, the search's end prints one
line `gunn-search: timing {json}` (MLflow calls and their seconds, each finalize step), so a
benchmark measures the driver from inside without a profiler's overhead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

ENV = "GUNN_SEARCH_TIMING"
PREFIX = "gunn-search: timing "


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


class Steps:
    """Seconds per named step, in the order first run (a step run twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


# Counters any module adds to (calls, total and longest seconds, last value); the timing line
# carries them. Cheap enough to keep always: a dict update per event.
COUNTERS: dict[str, dict] = {}


def add(name: str, seconds: float, value: float | None = None) -> None:
    c = COUNTERS.setdefault(name, {"n": 0, "s": 0.0, "max_s": 0.0})
    c["n"] += 1
    c["s"] += seconds
    c["max_s"] = max(c["max_s"], seconds)
    if value is not None:
        c["last"] = value


def quarters(marks: list[tuple], names: tuple[str, ...]) -> dict:
    """Per-event increase of cumulative counters over the first and the last quarter of the
    events: {"<name>_first_q": ..., "<name>_last_q": ...}. `marks` holds the counters' values
    at each event, in order; a cost per event that grows with the run shows as last > first."""
    q = len(marks) // 4
    if q < 1:
        return {}
    out = {}
    for i, name in enumerate(names):
        out[f"{name}_first_q"] = round((marks[q][i] - marks[0][i]) / q, 5)
        out[f"{name}_last_q"] = round((marks[-1][i] - marks[-1 - q][i]) / q, 5)
    return out


def report(data: dict) -> None:
    """One `gunn-search: timing {json}` line on stderr, when enabled."""
    if enabled():
        counters = {k: {f: round(v, 4) for f, v in c.items()} for k, c in COUNTERS.items()}
        print(PREFIX + json.dumps({**data, **counters}, sort_keys=True), file=sys.stderr,
              flush=True)


def parse(line: str) -> dict | None:
    """The data of a `report` line, or None for any other line."""
    return json.loads(line[len(PREFIX):]) if line.startswith(PREFIX) else None
