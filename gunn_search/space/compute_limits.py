"""What a space's compute-budget keys mean (`search.budget_epochs`, `search.time_budget`,
`search.budget_gpu_hours`): durations as written (`90m`, `2h`, `1.5d`) and as shown (`1m15s`,
`1h02m`: the progress line's and the ledger's, one format for both), and the trial count of a
search whose `num_samples` a budget left out. Counting what a search spends is the run's
business (`gunn_search.run.compute_budget`); the schema reads a file with these, the run shows
what it spent with them.
"""

from __future__ import annotations

import math
import re

# `search.num_samples` left out of a space with a budget: trials start while budget is left.
UNBOUNDED = 1_000_000

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text) -> float:
    """Seconds of a duration: `90m`, `2h`, `1.5d`, `45s` (a bare number: seconds). ValueError
    names what is wrong."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is no duration (use 90m, 2h, 1.5d)")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(text))
        if not m:
            raise ValueError(f"{text!r} is no duration (use 90m, 2h, 1.5d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return seconds


def fmt_duration(seconds: float) -> str:
    """A duration as the progress line and the budget's ledger show it: 5s, 1m15s, 1h02m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
