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

CPU dry mode (tests/test_gpu_check.py): the same steps on the CPU with tiny sizes (GUNN-15 at
batch 2, a one-stage network for throughput, `always` to force bf16 autocast, channels_last and
compile there), writing to the given file instead of RESULTS.md:

    python benchmarks/gpu_check.py --cpu --out /tmp/gpu_check.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- gpu_check -->", "<!-- /gpu_check -->"
PAPER_GUNN15_BYTES = 2.485e9  # Qiao et al. 2018: training GUNN-15 takes 2.485 GB on a GPU
MB = 1e6

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


def first_error(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "failed")[:200]


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
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                                  json.dumps(spec)], capture_output=True, text=True,
                                 timeout=limit, env=env, cwd=REPO)
            result = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
            if res.returncode or not result:
                row["error"] = first_error(res.stderr)
            else:
                row.update(json.loads(result[-1][len("RESULT "):]))
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
    r = measure(spec["model"], spec["mode"], spec["device"], spec["steps"], spec["batch"],
                spec["threads"], spec["over"])
    print("RESULT " + json.dumps(r), flush=True)


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


# --- the report -----------------------------------------------------------------------------------

GPU_INFO = """\
import json, torch
ok = torch.cuda.is_available()
p = torch.cuda.get_device_properties(0) if ok else None
print(json.dumps({"torch": torch.__version__, "cuda_available": ok, "cuda": torch.version.cuda,
                  "gpus": torch.cuda.device_count() if ok else 0,
                  "device": f"{torch.cuda.get_device_name(0)} ({p.total_memory / 2**30:.1f} GiB)"
                  if ok else None}))
"""


def machine(plan: Plan) -> dict:
    """torch's view of the machine, asked in a child process: this one never holds a CUDA
    context, which would count in the device memory the memory step reads."""
    out = subprocess.run([sys.executable, "-c", GPU_INFO], capture_output=True, text=True,
                         check=True).stdout
    m = json.loads(out.strip().splitlines()[-1])
    m.update(cpus=os.cpu_count(), python=platform.python_version())
    if plan.cpu:
        m.update(device=f"CPU only ({platform.machine()}, {os.cpu_count()} cores)", cuda=None)
    return m


def fmt_mb(b) -> str:
    return "–" if b is None else f"{b / MB:,.0f}"


def report(plan: Plan, m: dict, results: dict, seconds: float, date: str) -> str:
    L = [BEGIN, "## GPU check — `benchmarks/gpu_check.py`", ""]
    what = ("**CPU dry run** (tiny sizes; the numbers say nothing about a GPU)" if plan.cpu
            else "One GPU")
    L.append(f"{date}, {what}: {m['device']}"
             + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
             + f", torch {m['torch']}, Python {m['python']}, {m['cpus']} CPUs; the whole check "
             f"took {seconds:.0f} s. Rerun with `python benchmarks/gpu_check.py`; what each "
             "number is: the script's docstring.")
    L.append("")

    t = results.get("tests", {})
    counts = ", ".join(f"{n} {k}" for k, n in t.get("counts", {}).items()) or "no summary"
    line = f"**CUDA tests** (`pytest -m cuda`): {counts}"
    line += f" in {t['seconds']:.0f} s" if "seconds" in t else ""
    if t.get("failed"):
        line += "; failed: " + ", ".join(f"`{f.split(' ', 1)[-1]}`" for f in t["failed"])
    if t.get("error"):
        line += f" — **{t['error']}**"
    L += [line + ".", ""]

    rows = results.get("memory", [])
    L.append(f"**Peak training memory**, batch {plan.batch}, one cross-entropy step, fresh "
             "process per model (MB = 1e6 bytes). Paper: GUNN-15 trains in 2.485 GB (total "
             "device memory), compared with *device used*.")
    L.append("")
    L.append("| model | precision | step peak MB | total allocated peak MB | reserved MB | "
             "device used MB | step peak / SUNN-15 | device used / paper |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    sunn = {r["precision"]: r.get("peak_bytes") for r in rows if r["model"] == "sunn15"}
    for r in rows:
        if r.get("error"):
            L.append(f"| {r['model']} | {r['precision']} | {r['error']} | | | | | |")
            continue
        total = (r["peak_bytes"] + r["baseline_allocated_bytes"]
                 if "baseline_allocated_bytes" in r else None)
        used = r.get("device_used_bytes")
        s = sunn.get(r["precision"])
        ratio = f"{r['peak_bytes'] / s:.2f}x" if s else "–"
        paper = f"{used / PAPER_GUNN15_BYTES:.2f}x" if used and r["model"].startswith("gunn15") \
            else "–"
        L.append(f"| {r['model']} | {r['precision']} | {fmt_mb(r['peak_bytes'])} | "
                 f"{fmt_mb(total)} | {fmt_mb(r.get('peak_reserved_bytes'))} | {fmt_mb(used)} | "
                 f"{ratio} | {paper} |")
    if plan.cpu:
        L.append("")
        L.append("(On the CPU the step peak is resident memory, layer_memory.py's way; the CUDA "
                 "columns stay empty.)")
    L.append("")

    L.append(f"**Training throughput**, `trainers.train`, batch 64, synthetic 32x32, "
             f"{'bf16 autocast + channels_last' + (' (forced with `always`)' if plan.cpu else '')}"
             f", {64 * (plan.steps + 1)} images (a tenth held out), images/s of the second "
             "epoch (the first warms up, and compiles):")
    L.append("")
    L.append("| model | GUNN mode | compile | images/s | vs SUNN | trainer's peak MB | "
             "first epoch s |")
    L.append("|---|---|---|---:|---:|---:|---:|")
    through = results.get("eager", []) + results.get("compiled", [])
    base = {r["compile"]: r.get("images_per_s") for r in through
            if r["model"].startswith("sunn") and not r.get("error")}
    for r in through:
        on = "on" if r["compile"] else "off"
        if r.get("error"):
            L.append(f"| {r['model']} | {r['mode']} | {on} | {r['error']} | | | |")
            continue
        b = base.get(r["compile"])
        L.append(f"| {r['model']} | {r['mode']} | {on} | {r['images_per_s']:,.1f} | "
                 f"{r['images_per_s'] / b:.2f}x | {fmt_mb(r['peak_memory_bytes'])} | "
                 f"{r['first_epoch_s']:.1f} |" if b else
                 f"| {r['model']} | {r['mode']} | {on} | {r['images_per_s']:,.1f} | – | "
                 f"{fmt_mb(r['peak_memory_bytes'])} | {r['first_epoch_s']:.1f} |")
    L.append("")

    s = results.get("search", {})
    where = ("on the CPU (`--gpus-per-trial 0`, 0.5 CPU each)" if plan.cpu
             else "packed on one GPU (`--gpus-per-trial 0.25`)")
    if "trials" in s:
        statuses = {}
        for tr in s["trials"]:
            statuses[tr["status"]] = statuses.get(tr["status"], 0) + 1
        line = (f"**Four trials {where}**, a tiny synthetic space, "
                f"{plan.search_epochs} epoch(s) each: wall {s['wall_s']:.0f} s; "
                + ", ".join(f"{n} {k}" for k, n in statuses.items())
                + f"; at most {s['max_concurrent_trials']} trials running at once (MLflow run "
                "spans)")
        if not plan.cpu:
            line += ("; at most " + (f"{s['gpu_processes_max']} processes ({s['gpu_used_mib_max']}"
                                     " MiB) on the GPU at once (nvidia-smi)"
                                     if s.get("gpu_processes_max") is not None
                                     else "– processes on the GPU (no nvidia-smi)"))
        peaks = ", ".join(fmt_mb(tr["peak_memory_bytes"]) for tr in s["trials"])
        accs = ", ".join(f"{tr['val_acc']:.3f}" if tr["val_acc"] is not None else "–"
                         for tr in s["trials"])
        line += f". Per trial: val_acc {accs}; peak MB {peaks}"
        if s.get("error"):
            line += f" — **{s['error']}**"
        L.append(line + ".")
    else:
        L.append(f"**Four trials {where}**: **{s.get('error', 'not run')}**.")
    L += ["", END]
    return "\n".join(L) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put `section` (markers included) in place of the file's old one, or at its end."""
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def failures(results: dict) -> list[str]:
    out = []
    for name, r in results.items():
        for row in (r if isinstance(r, list) else [r]):
            if row.get("error"):
                out.append(f"{name}: {row.get('model', '')} {row['error']}".replace("  ", " "))
    return out


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
    sys.path.insert(0, str(HERE))  # layer_memory, throughput
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
        args.json.write_text(json.dumps({"machine": m, "results": results}, indent=1,
                                        default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
