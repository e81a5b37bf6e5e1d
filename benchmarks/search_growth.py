"""Search growth: does the driver's cost per trial stay flat as a search gets longer?

What it measures
    The real `gunn-search` CLI (`harness.run_cli`: a subprocess, Ray Tune + Optuna TPE
    + ASHA + the MLflow callback, a SQLite store in a temporary directory) on a space derived
    from smoke.yaml whose trials are tiny and one epoch long: dataset `synthetic` with
    `--images` training images (default 64, 10 % of them the validation split), smoke's
    two-stage networks, `epochs: 1` (ASHA has nothing to stop), 2 trials at a time, 1 CPU each.
    Run at each of `--sizes` (default 24 96 384 trials), each size in its own temporary dir,
    with GUNN_SEARCH_TIMING=1 so that the driver prints its own timing line at the end
    (`gunn_search/run/timing.py`).

    Per size:
        wall            Popen -> exit, and wall / trial
        trial phase     first child run created -> last child run ended (MLflow's times, set by
                        the driver), per trial: the steady-state cost of a trial
        driver CPU      user + system seconds of the `gunn-search` process (all its threads,
                        Ray's core-worker threads in it included; not Ray's own processes nor
                        the trial workers), read from /proc/PID/stat every 0.2 s by this script:
                        in the trial phase per trial and after the last trial ended; and per
                        trial over the first and the last quarter of the trials to end, from
                        the driver's own `time.process_time()` at each trial's end (growth shows
                        as last > first)
        MLflow write    seconds inside MlflowClient calls made through the callback's
                        BufferedClient (tracking.BufferedClient.busy_s) during the trial phase,
                        per trial, and over the first / last quarter, from the timing line
        state saves     Tune's experiment-state saves (`gunn_search/run/state_saves.py`): how many,
                        the longest, and the period they ended with
        end phase       last child run ended -> process exit (the best config, plots, MLflow
                        flush, the outcome, ray.shutdown, interpreter exit); `plots` is the
                        finalize step that draws the four plots (fANOVA included)

    `--profile` attaches `py-spy record --nonblocking` (25 Hz, raw collapsed stacks) to the
    driver and prints the functions with the most samples; it is how the growth below was found
    (the numbers of a profiled run are not the table's).

    `--plots-only N` times `plots.write_search_plots` alone on N synthetic trial records of
    smoke.yaml's space (random values and results), in this process, its imports done first (a
    search does them ahead of its end too).

Usage
    python benchmarks/search_growth.py [--sizes 24 96 384] [--images 64] [--profile] [--keep]
    python benchmarks/search_growth.py --plots-only 384

Machine and result (2026-11-30 15:01-15:08 UTC, 2-core x86-64 CPU VM (Intel Xeon), no GPU,
Linux 6.18, shared with other workers' jobs: load average 8.6-12.1 during the run; Python 3.11.7,
ray 2.60.0, mlflow 3.17.2, optuna 5.0.0, torch 2.14.1+cu130 on the CPU, matplotlib 3.11.2,
scikit-learn 1.9.1; `python benchmarks/search_growth.py`, 64 training images, all trials
`completed`, 6.0 MLflow calls per trial at every size):

| | 24 trials | 96 trials | 384 trials |
|---|---:|---:|---:|
| wall (s) | 45.0 | 74.4 | 191.2 |
| wall / trial (s) | 1.88 | 0.77 | 0.50 |
| trial phase / trial (s); first / last quarter | 0.89; 0.47 / 0.63 | 0.50; 0.44 / 0.44 | 0.45; 0.37 / 0.46 |
| driver CPU / trial, trial phase (s) | 0.114 | 0.085 | 0.103 |
|   first / last quarter, the last without the plot-import thread (s) | 0.070 / 0.032 | 0.074 / 0.069 | 0.076 / 0.108 |
| MLflow write / trial (s); first / last quarter | 0.152; 0.167 / 0.133 | 0.146; 0.155 / 0.128 | 0.149; 0.135 / 0.156 |
| Tune state saves: count, longest (s), last period (s) | 25, 0.469, 1.00 | 51, 0.122, 1.68 | 116, 0.315, 3.39 |
| end phase (s) (last trial ended -> exit) | 3.1 | 4.3 | 4.0 |
| plots (s) | 0.89 | 0.91 | 0.97 |

    `--plots-only` (15:07, load 6.7-7.2), the plots alone on N random trial records:
    24 / 96 / 384 / 1536 records 0.80 / 1.12 / 2.30 / 2.57 s; the same with the plots.py of
    the commit before this change (fANOVA on every trial, an artist per line) 0.85 / 1.35 /
    4.75 / 37.05 s.

    What grew, found with `--profile` (py-spy) and py-spy windows over trials 78-174 and
    243-320 of one 384-trial search (GIL samples per trial flat, 4.3 vs 4.2 at 50 Hz), and what
    was done:
    - Tune's experiment-state save, once a second (TUNE_GLOBAL_CHECKPOINT_S=1): it writes
      every trial's state (22 KB each: 9.1 MB JSON at 384) and the pickled Optuna study (0.6
      MB), up to 0.3-0.5 s a save on this loaded VM. Now the period is max(1 s, 19x the
      last save's time) (`gunn_search/run/state_saves.py`; it ended at 3.4 s at 384 trials): saves take at most ~5 % of the driver's wall time, i.e. a bounded share, not
      a growing one. That bound is most of what is left of the growth at 384 (0.076 -> 0.108
      s CPU per trial): 7.0 s of saves over 173 s of trials, ~5 % of a 0.45 s trial at the end.
    - Optuna TPE's sampling is O(trials) per suggestion (+3.6 ms per trial from window one to
      window two): the algorithm's, left as is.
    - The end: the final plots' fANOVA (now on at most 200 trials, a seeded sample), an MLflow
      search over every child run to find the best trial's run id (1.4 s at 384; now a query
      for that one run) and the removal of one spooled train_config.yaml folder per trial
      (1.1 s at 384; each is now removed once delivered). End phase at 384: 8.7 s before (a
      profiled run, 14:10, load 5-12), 7.1-7.8 s with only the fANOVA and save fixes, 4.0 s now.
    - MLflow writes cost ~0.15 s per trial at every size (mostly SQLite commits), flat.
    The 24-trial column's per-trial numbers carry its ~25 s of start-up and its quarters are
    6 trials each; the plot-import thread (matplotlib, fANOVA: 0.8-1.5 s CPU) runs once every
    trial has been sampled, in the last quarter on purpose. Summary: benchmarks/RESULTS.md,
    "MLflow load and search growth".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (REPO, check_exit, column_table, derive_space, finish,  # noqa: E402
                     loadavg, run_cli, search_runs)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    """user + system CPU seconds of a process (all threads), or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; fields[0] is the state
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def find_driver(timeout: float = 60.0) -> int | None:
    """The pid of the `gunn-search` process this script started (a direct child)."""
    me, deadline = os.getpid(), time.time() + timeout
    while time.time() < deadline:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == me and b"gunn-search" in cmd:
                return int(d.name)
        time.sleep(0.05)
    return None


class CpuSampler(threading.Thread):
    """Samples the driver's CPU seconds every `every` s: [(wall time, cpu s)]."""

    def __init__(self, every: float = 0.2, profile_to: Path | None = None):
        super().__init__(daemon=True)
        self.every, self.profile_to = every, profile_to
        self.samples: list[tuple[float, float]] = []
        self.pid: int | None = None
        self.spy: subprocess.Popen | None = None

    def run(self) -> None:
        self.pid = find_driver()
        if self.pid is None:
            return
        if self.profile_to is not None:
            self.spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(self.pid), "-r", "25", "--nonblocking",
                 "-f", "raw", "-o", str(self.profile_to)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while (cpu := proc_cpu(self.pid)) is not None:
            self.samples.append((time.time(), cpu))
            time.sleep(self.every)

    def at(self, t: float) -> float:
        """CPU seconds at wall time t (linear between samples)."""
        s = self.samples
        if not s or t <= s[0][0]:
            return s[0][1] if s else 0.0
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 + (c1 - c0) * (t - t0) / max(t1 - t0, 1e-9)
        return s[-1][1]


def growth_space(dest: Path, n: int, images: int) -> Path:
    return derive_space(
        dest, f"growth_{n}",
        data={"name": "synthetic", "synthetic_train_size": images,
              "synthetic_test_size": 10, "download": False},
        epochs=1,
        search={"num_samples": n, "max_concurrent": 2, "grace_period": 1},
        resources={"cpus_per_trial": 1, "gpus_per_trial": 0})


def run_size(n: int, root: Path, images: int, profile: bool) -> dict:
    work = root / f"n{n}"
    work.mkdir(parents=True)
    space = growth_space(work / "space.yaml", n, images)
    uri, exp = f"sqlite:///{work / 'mlflow.db'}", f"growth_{n}"
    os.environ["GUNN_SEARCH_TIMING"] = "1"  # run_cli passes our environment on
    load0 = loadavg()
    print(f"size {n}: load {load0}", file=sys.stderr, flush=True)
    sampler = CpuSampler(profile_to=work / "pyspy.txt" if profile else None)
    sampler.start()
    res = run_cli(space, work, uri, exp)
    sampler.join(timeout=10)
    if sampler.spy is not None:
        sampler.spy.wait(timeout=120)
    load1 = loadavg()
    check_exit(res)
    timing = next((d for _, ln in res["stderr"]
                   if (d := _timing(ln)) is not None), None)
    _, parent, children = search_runs(uri, exp)
    ms = 1e-3
    starts = sorted(r.info.start_time * ms for r in children)
    ends = sorted((r.info.end_time or r.info.start_time) * ms for r in children)
    first, last = starts[0], ends[-1]
    q = max(1, len(ends) // 4)
    cpu = sampler.at
    out = {
        "n": n, "trials": len(children), "wall": res["wall"],
        "statuses": dict(Counter(r.data.tags.get("gunn_search.status", "?") for r in children)),
        "trial_phase": last - first,
        "cpu_total": sampler.samples[-1][1] if sampler.samples else None,
        "cpu_trials": cpu(last) - cpu(first),
        # per trial over the first and the last quarter of the trials to end, counted between
        # trial ends (so the first trial's start-up, the Ray workers starting, is left out)
        "cpu_first_q": (cpu(ends[q]) - cpu(ends[0])) / q,
        "cpu_last_q": (cpu(last) - cpu(ends[-q - 1])) / q,
        "wall_first_q": (ends[q] - ends[0]) / q,
        "wall_last_q": (last - ends[-q - 1]) / q,
        "cpu_end": (sampler.samples[-1][1] - cpu(last)) if sampler.samples else None,
        "end_phase": res["t1"] - last,
        "timing": timing, "load_before": load0, "load_after": load1,
        "profile": str(work / "pyspy.txt") if profile else None,
    }
    if profile:
        out["top"] = top_functions(work / "pyspy.txt")
    return out


def _timing(line: str) -> dict | None:
    from gunn_search.run import timing
    return timing.parse(line)


def top_functions(path: Path, k: int = 25) -> list[tuple[str, float]]:
    """Share of samples in which each function is on the stack (py-spy raw format), top k."""
    incl: Counter = Counter()
    total = 0
    if not path.exists():
        return []
    for ln in path.read_text().splitlines():
        stack, _, count = ln.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        for f in set(stack.split(";")):
            incl[f] += c
    return [(f, c / total) for f, c in incl.most_common(k)] if total else []


def plots_only(n: int, seed: int = 0) -> dict:
    """Time `write_search_plots` on n random trial records of smoke.yaml's searched space."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    import optuna.importance  # noqa: F401  (imported ahead in a search too: mlflow_callback)

    from gunn_search.results.plots import TrialRecord, write_search_plots
    from gunn_search.space import distributions as dist
    from gunn_search.space import load_space

    dists = {p: dist.to_optuna(d) for p, d in load_space("smoke.yaml").searched().items()}
    rng = random.Random(seed)

    def draw(d):
        if isinstance(d, CategoricalDistribution):
            return rng.choice(d.choices)
        if isinstance(d, IntDistribution):
            return rng.randint(d.low, d.high)
        return rng.uniform(d.low, d.high)

    records = []
    for i in range(n):
        v = rng.random()
        records.append(TrialRecord(f"t{i:05d}", {p: draw(d) for p, d in dists.items()},
                                   [{"epoch": 1, "val_acc": v}], "completed", v))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        paths = write_search_plots(records, d, distributions=dists)
        secs = time.perf_counter() - t0
    return {"n": n, "seconds": secs, "plots": [p.name for p in paths]}


def table(results: list[dict]) -> str:
    def tm(r, key):
        return (r["timing"] or {}).get(key)

    def quarters(r, name):  # per trial, first / last quarter of the trials, from the driver
        first, last = tm(r, f"{name}_first_q"), tm(r, f"{name}_last_q")
        return "n/a" if first is None else f"{first:.3f} / {last:.3f}"

    rows = [
        ("trials (statuses)", lambda r: "{} ({})".format(
            r["trials"], ", ".join(f"{k} {v}" for k, v in r["statuses"].items()))),
        ("**wall (s)**", lambda r: f"**{r['wall']:.1f}**"),
        ("**wall / trial (s)**", lambda r: f"**{r['wall'] / r['n']:.2f}**"),
        ("trial phase / trial (s)", lambda r: f"{r['trial_phase'] / r['n']:.2f}"),
        ("  first / last quarter of trials, wall per trial (s)",
         lambda r: f"{r['wall_first_q']:.2f} / {r['wall_last_q']:.2f}"),
        ("**driver CPU / trial, trial phase (s)**",
         lambda r: f"**{r['cpu_trials'] / r['n']:.3f}**"),
        ("  first / last quarter of trials (s)",
         lambda r: quarters(r, "cpu_s")),
        # The plotting imports (matplotlib, fANOVA) run in a thread once every trial has been
        # sampled and a slot is free (mlflow_callback): a one-off in the last quarter.
        ("  last quarter without the plot-import thread (s)", lambda r: "n/a"
         if tm(r, "cpu_s_last_q") is None or tm(r, "plot_preload") is None
         else f"{tm(r, 'cpu_s_last_q') - tm(r, 'plot_preload')['s'] / (r['n'] // 4):.3f}"),
        ("driver CPU, whole run (s)", lambda r: f"{r['cpu_total']:.1f}"),
        ("**MLflow write / trial, trial phase (s)**",
         lambda r: "n/a" if tm(r, "mlflow_s_trials") is None
         else f"**{tm(r, 'mlflow_s_trials') / r['n']:.3f}**"),
        ("  first / last quarter of trials (s)",
         lambda r: quarters(r, "mlflow_s")),
        ("  MLflow calls / trial", lambda r: "n/a" if tm(r, "mlflow_calls_trials") is None
         else f"{tm(r, 'mlflow_calls_trials') / r['n']:.1f}"),
        ("Tune state saves: count, longest (s), last period (s)",
         lambda r: "n/a" if tm(r, "tune_state_save") is None else
         "{n:.0f}, {max_s:.3f}, {last:.2f}".format(**tm(r, "tune_state_save"))),
        ("**end phase (s)** (last trial ended -> exit)", lambda r: f"**{r['end_phase']:.1f}**"),
        ("  driver CPU in the end phase (s)", lambda r: f"{r['cpu_end']:.1f}"),
        ("  finalize steps (s)", lambda r: "n/a" if tm(r, "finalize") is None else ", ".join(
            f"{k} {v:.2f}" for k, v in tm(r, "finalize").items())),
        ("**plots (s)**", lambda r: "n/a" if tm(r, "finalize") is None
         else f"**{tm(r, 'finalize')['plots']:.2f}**"),
        ("load average before -> after", lambda r: f"{r['load_before']} -> {r['load_after']}"),
    ]
    return column_table([f"{r['n']} trials" for r in results], rows, results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[24, 96, 384])
    ap.add_argument("--images", type=int, default=64, help="synthetic training images")
    ap.add_argument("--profile", action="store_true", help="py-spy the driver (slower)")
    ap.add_argument("--plots-only", type=int, nargs="+", metavar="N",
                    help="only time the plots on N synthetic trial records")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.plots_only:
        for n in args.plots_only:
            r = plots_only(n)
            print(f"plots of {n} trials: {r['seconds']:.2f} s ({', '.join(r['plots'])})")
        return
    root = Path(tempfile.mkdtemp(prefix="gunn-growth-"))
    results = []
    for n in args.sizes:
        results.append(run_size(n, root, args.images, args.profile))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "top"}, default=str),
              file=sys.stderr, flush=True)
        for f, share in results[-1].get("top", []):
            print(f"  {share:6.1%}  {f}", file=sys.stderr)
    print(table(results))
    finish(results, root, args.json, args.keep)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
