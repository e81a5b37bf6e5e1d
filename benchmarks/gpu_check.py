"""One-shot GPU check: everything that needs a GPU, measured in under 8 minutes on one GPU.

Run it on a GPU machine, from the repository root after `pip install -e ".[test]"`:

    python benchmarks/gpu_check.py

It prints progress on stderr and its report (Markdown) on stdout, writes that report into
benchmarks/RESULTS.md between the markers `<!-- gpu_check -->` and `<!-- /gpu_check -->`
(replacing the section a previous run wrote) and exits 0 when every step passed.

What it measures, in this order (each step has a time limit; a step cut short by the 7.7-minute
budget is reported as such, the report is written anyway):

1. **CUDA tests**: `pytest -m cuda` (tests/test_cuda.py: Algorithm 1 in CUDA kernels against
   the naive reference, bf16 autocast + channels_last gradients against float32, the trainer's
   CUDA defaults and its peak memory from `torch.cuda.max_memory_allocated`, torch.compile,
   four trials on one GPU): passed / failed / skipped.
2. **Peak training memory** of GUNN-15 (Algorithm 1, `recompute` and `keep`) and SUNN-15 at
   batch 64, one cross-entropy step, each model in a fresh process
   (`benchmarks/layer_memory.py`'s `run_child`): float32 (the paper's setting) and bf16 autocast
   + channels_last (the trainer's CUDA default). Reported: the step's peak above what was
   allocated before it, the total peak allocated (weights, gradients, batch, activations), the
   allocator's reserved peak, and the device memory in use after the step (total - free, as
   nvidia-smi counts: the CUDA context and the allocator's cache included), which is what the
   paper's 2.485 GB for GUNN-15 (total device memory; GB read as 1e9 bytes) compares with.
3. **Training throughput**, images/s of `trainers.train` (`benchmarks/throughput.py`'s
   `measure`): GUNN-15 and SUNN-15, batch 64, synthetic 32x32 data, bf16 autocast +
   channels_last, measured over the second epoch (the first warms up and, with compile,
   compiles), compile off and on (inductor cache cold: a fresh TORCHINDUCTOR_CACHE_DIR), with
   the trainer's reported peak memory and the first epoch's time (compile time).
4. **Four trials packed on one GPU**: `gunn-search --space <tiny synthetic space>
   --gpus-per-trial 0.25 --num-samples 4` (the space written to a temporary file, MLflow in a
   temporary SQLite store): wall time, each trial's status, val_acc and peak memory (torch.cuda's:
   they trained on the GPU), how many trials ran at once (their MLflow runs' spans) and the most
   processes nvidia-smi saw on the GPU at once.

Where each part lives: gpu_check_plan.py (sizes, limits, the time budget), gpu_check_steps.py
(the four measurements), gpu_check_report.py (the machine, the section, writing it between the
markers); this file runs them in order.

Machine and result: the section between the markers in benchmarks/RESULTS.md names its machine
and date (none yet: the check has run only as its CPU dry run here, no GPU lent).

CPU dry mode (tests/test_gpu_check.py): the same steps on the CPU with tiny sizes (GUNN-15 at
batch 2, a one-stage network for throughput, `always` to force bf16 autocast, channels_last and
compile there), writing to the given file instead of RESULTS.md:

    python benchmarks/gpu_check.py --cpu --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # its parts, layer_memory, throughput
from gpu_check_plan import Clock, log, make_plan  # noqa: E402
from gpu_check_report import failures, machine, report, write_section  # noqa: E402
from gpu_check_steps import (child, step_memory, step_search, step_tests,  # noqa: E402
                             step_throughput)
from harness import write_json  # noqa: E402

RESULTS = HERE / "RESULTS.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", "--dry-run", dest="cpu", action="store_true",
                   help="the same steps on the CPU with tiny sizes (needs --out)")
    p.add_argument("--out", type=Path, help=f"file to write the section into (default: {RESULTS}; "
                                            "required with --cpu)")
    p.add_argument("--budget", type=float, help="seconds for the whole check (default: 460 on "
                                                "a GPU, 1500 for --cpu)")
    p.add_argument("--json", type=Path, help="also write the raw results to this JSON file")
    p.add_argument("--only", help="comma list of steps to run (tests, memory, eager, search, "
                                  "compiled); the section then holds only those")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.cpu and args.out is None:
        p.error("--cpu writes CPU numbers: give --out FILE (RESULTS.md is for the GPU's)")
    plan = make_plan(args.cpu, args.budget)
    clock = Clock(plan.budget_s)
    m = machine(plan)
    if not plan.cpu and not m["cuda_available"]:
        p.error("no CUDA GPU here; use --cpu --out FILE for the dry run")
    out = args.out or RESULTS
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"{m['device']}; budget {plan.budget_s:.0f} s")
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        tmp = Path(tmp)
        steps = [("tests", lambda: step_tests(plan, clock)),
                 ("memory", lambda: step_memory(plan, clock)),
                 ("eager", lambda: step_throughput(plan, clock, False, tmp)),
                 ("search", lambda: step_search(plan, clock, tmp)),
                 ("compiled", lambda: step_throughput(plan, clock, True, tmp))]
        only = set(args.only.split(",")) if args.only else {name for name, _ in steps}
        for name, run in steps:
            if name not in only:
                continue
            t0 = time.monotonic()
            try:
                results[name] = run()
            except Exception as e:  # noqa: BLE001 - a broken step is reported, the rest run
                results[name] = {"error": f"{type(e).__name__}: {str(e).strip()[:200]}"}
            log(f"{name}: done in {time.monotonic() - t0:.0f} s "
                f"({clock.elapsed():.0f} s so far)")
    section = report(plan, m, results, clock.elapsed(), date)
    write_section(out, section)
    print(section, end="")
    bad = failures(results)
    for b in bad:
        log("FAILED " + b)
    log(f"wrote {out}; {'all steps passed' if not bad else f'{len(bad)} problem(s)'}")
    if args.json:
        write_json(args.json, {"machine": m, "results": results})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
