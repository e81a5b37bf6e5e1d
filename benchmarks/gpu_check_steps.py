"""The GPU check's four measurements (`gpu_check.py`): the CUDA tests, peak training memory,
training throughput, and four trials packed on one GPU. Each step takes the plan and the clock
and returns its rows; a row that failed carries an "error" and the others go on.

What each measures, on which machine, and where the result is: gpu_check.py's docstring and
benchmarks/RESULTS.md, between `<!-- gpu_check -->` and `<!-- /gpu_check -->`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from gpu_check_plan import COMPILED_RUNS, EAGER_RUNS, MEMORY_MODELS, SPACE, Clock, Plan, log
from harness import REPO, first_error, print_result, read_result

ENTRY = REPO / "benchmarks" / "gpu_check.py"  # its --child runs one throughput measurement


# --- 1. the CUDA tests ----------------------------------------------------------------------------

def step_tests(plan: Plan, clock: Clock) -> dict:
    limit = clock.limit(plan.limits["tests"])
    if limit is None:
        return {"error": "not run: time budget spent"}
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider"]
    log(f"running {' '.join(cmd[2:])} (limit {limit:.0f} s)")
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=limit)
        out, rc = res.stdout + res.stderr, res.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return {"error": f"timed out after {limit:.0f} s", "seconds": time.monotonic() - t0,
                "counts": count_outcomes(out), "tail": out[-2000:]}
    counts = count_outcomes(out)
    failed = [ln.split(" - ")[0] for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    r = {"rc": rc, "counts": counts, "failed": failed, "seconds": time.monotonic() - t0}
    if rc not in (0, 5) or counts.get("failed") or counts.get("error"):
        r["error"] = f"pytest exit code {rc}"
        r["tail"] = out[-3000:]
    return r


def count_outcomes(out: str) -> dict:
    """{"passed": 8, "skipped": 2, ...} from pytest's last summary line."""
    lines = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)
             or "no tests ran" in ln]
    if not lines:
        return {}
    return {k.rstrip("s") if k == "errors" else k: int(n)
            for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", lines[-1])}


# --- 2. peak training memory (benchmarks/layer_memory.py) -----------------------------------------

def step_memory(plan: Plan, clock: Clock) -> list[dict]:
    import layer_memory

    rows = []
    for bf16 in (False, True):
        args = argparse.Namespace(batch=plan.batch, threads=plan.threads, device=plan.device,
                                  bf16=bf16, channels_last=bf16, malloc="fixed")
        for variant in MEMORY_MODELS:
            row = {"model": variant, "precision": "bf16 + channels_last" if bf16 else "float32"}
            limit = clock.limit(plan.limits["memory"])
            if limit is None:
                row["error"] = "not run: time budget spent"
            else:
                log(f"peak memory: {variant}, {row['precision']}, batch {plan.batch}")
                try:
                    row.update(layer_memory.run_child(variant, args, network=True, timeout=limit))
                except subprocess.TimeoutExpired:
                    row["error"] = f"timed out after {limit:.0f} s"
                except subprocess.CalledProcessError as e:
                    row["error"] = first_error(e.stderr)
            rows.append(row)
    return rows


# --- 3. throughput (benchmarks/throughput.py) -----------------------------------------------------

def step_throughput(plan: Plan, clock: Clock, compiled: bool, tmp: Path) -> list[dict]:
    rows = []
    for model, mode in (COMPILED_RUNS if compiled else EAGER_RUNS):
        label = model if plan.model_over is None else model.replace("15", "-tiny")
        row = {"model": label, "mode": mode if model.startswith("gunn") else "grouped",
               "compile": compiled}
        limit = clock.limit(plan.limits["compiled" if compiled else "eager"])
        if limit is None:
            row["error"] = "not run: time budget spent"
            rows.append(row)
            continue
        over = dict(plan.speedups)
        over["compile"] = ("always" if plan.cpu else True) if compiled else False
        if plan.model_over is not None:
            over["model"] = {**plan.model_over, "family": model[:4], "gunn_mode": mode}
        spec = {"model": label, "mode": mode, "device": plan.device, "steps": plan.steps,
                "batch": 64, "threads": plan.threads, "over": over}
        log(f"throughput: {label} {row['mode']}, compile {'on' if compiled else 'off'} "
            f"(limit {limit:.0f} s)")
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp / "inductor")}
        try:
            res = subprocess.run([sys.executable, str(ENTRY), "--child", json.dumps(spec)],
                                 capture_output=True, text=True, timeout=limit, env=env,
                                 cwd=REPO)
            result = read_result(res.stdout)
            if res.returncode or result is None:
                row["error"] = first_error(res.stderr)
            else:
                row.update(result)
                row["model"] = label
        except subprocess.TimeoutExpired:
            row["error"] = f"timed out after {limit:.0f} s"
        rows.append(row)
    return rows


def child(spec: dict) -> None:
    """In a fresh process: one `throughput.measure`, printed as a RESULT line."""
    import torch

    from throughput import measure

    torch.set_num_threads(spec["threads"])
    print_result(measure(spec["model"], spec["mode"], spec["device"], spec["steps"],
                         spec["batch"], spec["threads"], spec["over"]))


# --- 4. four trials packed on one GPU -------------------------------------------------------------

class GpuProcesses(threading.Thread):
    """Polls nvidia-smi once a second: the most compute processes on the GPU at once."""

    def __init__(self):
        super().__init__(daemon=True)
        self.exe = shutil.which("nvidia-smi")
        self.max_procs, self.max_used_mib, self.stop = 0, 0, threading.Event()

    def run(self):
        while self.exe and not self.stop.wait(1.0):
            try:
                out = subprocess.run([self.exe, "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            rows = [ln.split(",") for ln in out.splitlines() if ln.strip()]
            self.max_procs = max(self.max_procs, len(rows))
            try:
                self.max_used_mib = max(self.max_used_mib, sum(int(r[1]) for r in rows))
            except (IndexError, ValueError):
                pass


def step_search(plan: Plan, clock: Clock, tmp: Path) -> dict:
    limit = clock.limit(plan.limits["search"])
    if limit is None:
        return {"error": "not run: time budget spent"}
    work = tmp / "search"
    work.mkdir()
    space = work / "space.yaml"
    space.write_text(SPACE.format(train=plan.search_train, epochs=plan.search_epochs,
                                  cpus=plan.cpus_per_trial, gpus=plan.gpus_per_trial))
    exe = Path(sys.executable).parent / "gunn-search"
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "gunn_search.cli"]) + [
        "--space", str(space), "--gpus-per-trial", f"{plan.gpus_per_trial:g}",
        "--cpus-per-trial", f"{plan.cpus_per_trial:g}", "--num-samples", "4",
        "--storage", str(work / "runs"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
        "--experiment", "gpu_check"]
    log(f"search: {' '.join(cmd[1:])} (limit {limit:.0f} s)")
    poller = GpuProcesses() if not plan.cpu else None
    if poller:
        poller.start()
    t0 = time.monotonic()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    try:
        res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=limit,
                             env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {limit:.0f} s", "command": " ".join(cmd[1:])}
    finally:
        if poller:
            poller.stop.set()
    r = {"wall_s": time.monotonic() - t0, "rc": res.returncode,
         "command": "gunn-search " + " ".join(cmd[1:])}
    if poller:
        r["gpu_processes_max"] = poller.max_procs if poller.exe else None
        r["gpu_used_mib_max"] = poller.max_used_mib if poller.exe else None
    if res.returncode != 0:
        r["error"] = first_error(res.stderr)
        return r
    r.update(search_runs(work / "mlflow.db"))
    if sorted(t["status"] for t in r["trials"]) != ["completed"] * 4:
        r["error"] = "not every trial completed: " + ", ".join(t["status"] for t in r["trials"])
    return r


def search_runs(db: Path) -> dict:
    """The trials' outcomes from MLflow, and how many ran at the same time."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("gpu_check")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'",
                              max_results=100)
    trials = [{"status": r.data.tags.get(tr.STATUS_TAG, "?"),
               "val_acc": r.data.metrics.get("val_acc"),
               "peak_memory_bytes": r.data.metrics.get("peak_memory_bytes"),
               "lr": r.data.params.get("optim.lr"),
               "span": (r.info.start_time, r.info.end_time or r.info.start_time)} for r in runs]
    spans = [t["span"] for t in trials]
    together = max((sum(s <= t < e for s, e in spans) for t, _ in spans), default=0)
    return {"trials": trials, "max_concurrent_trials": together}
