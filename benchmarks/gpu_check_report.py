"""The GPU check's report (`gpu_check.py`): the machine it ran on, its results as a Markdown
section between the markers `<!-- gpu_check -->` and `<!-- /gpu_check -->`, that section put in
place of the old one in benchmarks/RESULTS.md (or the file given), and the steps that failed.

What the check measured, on which machine, and where the result is: gpu_check.py's docstring and
that section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from gpu_check_plan import Plan
from harness import megabytes

BEGIN, END = "<!-- gpu_check -->", "<!-- /gpu_check -->"
PAPER_GUNN15_BYTES = 2.485e9  # Qiao et al. 2018: training GUNN-15 takes 2.485 GB on a GPU


def mb(b) -> str:
    """MB (1e6 bytes) without decimals, as the section's tables print them."""
    return megabytes(b, 0)


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
        L.append(f"| {r['model']} | {r['precision']} | {mb(r['peak_bytes'])} | "
                 f"{mb(total)} | {mb(r.get('peak_reserved_bytes'))} | {mb(used)} | "
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
                 f"{r['images_per_s'] / b:.2f}x | {mb(r['peak_memory_bytes'])} | "
                 f"{r['first_epoch_s']:.1f} |" if b else
                 f"| {r['model']} | {r['mode']} | {on} | {r['images_per_s']:,.1f} | – | "
                 f"{mb(r['peak_memory_bytes'])} | {r['first_epoch_s']:.1f} |")
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
        peaks = ", ".join(mb(tr["peak_memory_bytes"]) for tr in s["trials"])
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
