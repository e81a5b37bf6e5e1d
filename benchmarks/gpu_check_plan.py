"""The GPU check's plan (`gpu_check.py`): what it runs, at which sizes, within which time limits,
on a GPU or in its CPU dry run, and the clock that holds the whole check to its budget.

It measures nothing itself; what the check measured, on which machine, and where the result is:
gpu_check.py's docstring and benchmarks/RESULTS.md, between `<!-- gpu_check -->` and
`<!-- /gpu_check -->`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

MEMORY_MODELS = ["sunn15", "gunn15:recompute", "gunn15:keep"]
EAGER_RUNS = [("sunn15", "recompute"), ("gunn15", "recompute"), ("gunn15", "keep")]
COMPILED_RUNS = [("sunn15", "recompute"), ("gunn15", "recompute")]
TINY_MODEL = {"stages": [{"N": 8, "P": 2, "K": 1, "M": 1}], "stem_channels": 8,
              "head_channels": None}

SPACE = """\
# gpu_check's search: a tiny network on synthetic data; only the learning rate is searched.
name: gpu_check
model: {{stem_channels: 16, head_channels: null, stages: [{{N: 32, P: 4, K: 2, M: 1}}]}}
data: {{name: synthetic, synthetic_train_size: {train}, synthetic_test_size: 64}}
optim: {{lr: {{low: 0.02, high: 0.2, log: true}}}}
epochs: {epochs}
batch_size: 64
search: {{num_samples: 4, seed: 0, max_concurrent: 4, grace_period: {epochs}}}
resources: {{cpus_per_trial: {cpus}, gpus_per_trial: {gpus}}}
"""


@dataclass
class Plan:
    """Sizes and limits: the GPU check, or its CPU dry run."""

    cpu: bool
    device: str
    batch: int  # memory step
    threads: int
    steps: int  # throughput: measured steps
    speedups: dict  # amp / channels_last / compile values for the trainer ("always" on the CPU)
    model_over: dict | None  # throughput: an explicit (tiny) model instead of the named ones
    search_train: int
    search_epochs: int
    cpus_per_trial: float
    gpus_per_trial: float
    budget_s: float
    limits: dict = field(default_factory=dict)


def make_plan(cpu: bool, budget_s: float | None) -> Plan:
    if cpu:
        return Plan(cpu=True, device="cpu", batch=2, threads=2, steps=2,
                    speedups={"amp": "always", "channels_last": "always"},
                    model_over=TINY_MODEL, search_train=320, search_epochs=1,
                    cpus_per_trial=0.5, gpus_per_trial=0, budget_s=budget_s or 1500,
                    limits={"tests": 300, "memory": 120, "eager": 120, "compiled": 300,
                            "search": 400})
    return Plan(cpu=False, device="cuda", batch=64, threads=4, steps=20,
                speedups={"amp": True, "channels_last": True}, model_over=None,
                search_train=2048, search_epochs=2, cpus_per_trial=1, gpus_per_trial=0.25,
                budget_s=budget_s or 460,
                limits={"tests": 210, "memory": 40, "eager": 45, "compiled": 150,
                        "search": 150})


class Clock:
    """The check's overall budget: each step gets its own limit or what is left, if less."""

    def __init__(self, budget_s: float):
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, step_limit: float) -> float | None:
        """Seconds for the next piece of work; None when too little is left to start it."""
        t = min(step_limit, self.left())
        return t if t >= 10 else None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def log(msg: str) -> None:
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)
