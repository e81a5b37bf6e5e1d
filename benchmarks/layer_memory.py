"""Memory and time of one training step of a GUNN layer (Algorithm 1) against SUNN.

What it measures
    The CIFAR layer {N=240, P=20, K=2, M=1} with the projection shortcut (GUNN-15's first layer),
    batch 64, 32x32, float32, training mode, one step = forward + ``out.backward(r)`` for a fixed
    random ``r`` (the gradient of ``sum(out * r)``), input ``x`` requiring grad as in a network.
    Variants: SUNN (grouped bottlenecks), SUNN per unit (``grouped=False``), naive GUNN, and
    Algorithm-1 GUNN in ``recompute`` and ``keep`` modes.

    1. saved: bytes of the distinct storages (deduplicated by ``untyped_storage().data_ptr()``)
       that pass through ``torch.autograd.graph.saved_tensors_hooks`` in the forward pass,
       excluding the input x and the parameters. That includes ``ctx.save_for_backward`` of the
       custom Functions and, in keep mode, the per-segment graphs that its forward builds under
       ``enable_grad``. Shown with and without the layer output y (recompute/keep save y; in a
       network the next convolution saves it anyway), next to `trainers.model.cost.layer_cost`.
    2. time: median step time over several iterations after warm-up; the whole timing pass is run
       ``--rounds`` times, variants interleaved, and the best median kept (shared machine).
    3. peak: in a fresh process per variant (``--child``): build, one warm-up step, then the
       peak-RSS high-water mark is reset (``/proc/self/clear_refs`` = 5) and one more step is run;
       peak = VmHWM - VmRSS before the step, i.e. the extra resident memory the step needed
       (activations, output, gradients, temporaries). glibc's malloc is run with a fixed
       ``MALLOC_MMAP_THRESHOLD_`` so that freed tensors go back to the OS and RSS tracks live
       memory (``--malloc default`` to compare). On CUDA: ``max_memory_allocated`` after
       ``reset_peak_memory_stats`` minus memory allocated before the step.
    4. the whole networks GUNN-15 (recompute, keep, naive) and SUNN-15 at batch 64 (cross-entropy
       step): saved bytes via the same hooks (parameters excluded, the image included), next to
       `trainers.model.cost.estimate`, and peak RSS and step time in a fresh process. The paper
       reports 2.485 GB for training GUNN-15 on a GPU (total device memory, not comparable to CPU
       RSS).

Machine and result (2026-11-23 11:40-11:47 UTC, the shared 2-core x86-64 CPU VM, 23 GB RAM,
Linux 6.18, torch 2.14.1+cu130 on the CPU, ``torch.set_num_threads(2)``, no GPU; load < 2,
``--rounds 3``), Algorithm 1 with the state-reading convs as matrix products on the state's two
pieces (trainers/model/state_conv.py):

    | layer {240,20,2,1}+proj, b64 | peak step MB | peak / SUNN | step s | time / SUNN |
    |------------------------------|-------------:|------------:|-------:|------------:|
    | SUNN (grouped)               |        880.7 |       1.00x |  1.117 |       1.00x |
    | GUNN recompute (default)     |        141.5 |       0.16x |  1.429 |       1.28x |
    | GUNN keep                    |        786.9 |       0.89x |  1.084 |       0.97x |

    GUNN-15 peak: recompute 536 MB (0.39x SUNN-15), keep 1,476 MB (1.06x).
    Targets (peak <= 1.0x SUNN, time <= 1.35x SUNN): met by both modes on this CPU. At batch 32
    (2026-11-30, five quiet runs) recompute stepped at 1.30-1.38x SUNN (mean 1.34x). Full
    tables: benchmarks/RESULTS.md, "Layer memory, step time and throughput"; the first
    measurements (2026-11-23 08:32, load 4-12: recompute peak 0.45x, step 6.73x SUNN), the runs
    in between and their reasons: benchmarks/HISTORY.md. GPU numbers: `gpu_check.py`.

Usage::

    python benchmarks/layer_memory.py                 # everything, markdown to stdout
    python benchmarks/layer_memory.py --parts saved,time
    python benchmarks/layer_memory.py --parts time --variants recompute,keep --batch 32 --rounds 3
    python benchmarks/layer_memory.py --device cuda --bf16 --channels-last
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from harness import megabytes, print_result, read_result, table_head, table_row
from trainers.model.cost import estimate, layer_cost
from trainers.model.gunn_layer import GUNNLayer
from trainers.model.network import build_model
from trainers.model.sunn_layer import SUNNLayer
from trainers.model.spec import model_spec

LAYER = dict(N=240, P=20, K=2, M=1, projection=True)
LAYER_VARIANTS = ["sunn", "sunn_unit", "naive", "recompute", "keep"]
LAYER_LABELS = {
    "sunn": "SUNN (grouped)",
    "sunn_unit": "SUNN (per unit)",
    "naive": "GUNN naive",
    "recompute": "GUNN recompute (Alg. 1)",
    "keep": "GUNN keep (Alg. 1)",
}
NET_VARIANTS = ["sunn15", "gunn15:recompute", "gunn15:keep", "gunn15:naive"]


# --- building -----------------------------------------------------------------------------------

def make_layer(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    L = LAYER
    if variant == "sunn":
        return SUNNLayer(L["N"], L["P"], L["K"], L["M"], L["projection"], grouped=True)
    if variant == "sunn_unit":
        return SUNNLayer(L["N"], L["P"], L["K"], L["M"], L["projection"], grouped=False)
    return GUNNLayer(L["N"], L["P"], L["K"], L["M"], L["projection"], mode=variant)


def make_net(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name, _, mode = variant.partition(":")
    return build_model(name, gunn_mode=mode or "recompute")


class Bench:
    """One module, its input and the fixed upstream gradient, on the requested device."""

    def __init__(self, variant: str, args, network: bool = False):
        self.args, self.network = args, network
        self.dev = torch.device(args.device)
        self.module = (make_net(variant) if network else make_layer(variant)).to(self.dev).train()
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        self.module = self.module.to(memory_format=fmt)
        g = torch.Generator().manual_seed(1)
        c, hw = (3, 32) if network else (LAYER["N"], 32)
        self.x = torch.randn(args.batch, c, hw, hw, generator=g).to(self.dev, memory_format=fmt)
        if network:
            self.target = torch.randint(0, 10, (args.batch,), generator=g).to(self.dev)
        else:
            self.x.requires_grad_()
            self.r = torch.randn(args.batch, c, hw, hw, generator=g).to(self.dev, memory_format=fmt)

    def autocast(self):
        return torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.args.bf16)

    def forward(self):
        with self.autocast():
            return self.module(self.x)

    def step(self):
        for p in self.module.parameters():
            p.grad = None
        self.x.grad = None
        out = self.forward()
        if self.network:
            F.cross_entropy(out.float(), self.target).backward()
        else:
            out.backward(self.r.to(out.dtype))
        del out
        self.sync()

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()


# --- 1. saved tensors ---------------------------------------------------------------------------

def saved_tensors(bench: Bench) -> dict:
    """Unique storages saved for backward during one forward, by kind, in bytes."""
    x_ptr = bench.x.untyped_storage().data_ptr()
    param_ptrs = {p.untyped_storage().data_ptr() for p in bench.module.parameters()}
    seen: dict[int, tuple[str, int]] = {}

    def pack(t):
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in seen:
            if ptr == x_ptr:
                kind = "input"
            elif ptr in param_ptrs:
                kind = "param"
            elif t.dim() >= 2 and t.shape[0] == bench.args.batch:
                kind = "activation"
            else:
                kind = "other"  # per-channel BN statistics, concatenated weights
            seen[ptr] = (kind, st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = bench.forward()
    y_ptr = out.untyped_storage().data_ptr()
    res = {k: 0 for k in ("input", "param", "activation", "other", "output")}
    for ptr, (kind, nbytes) in seen.items():
        res["output" if ptr == y_ptr else kind] += nbytes
    res["count"] = len(seen)
    del out
    return res


# --- 2. step time -------------------------------------------------------------------------------

def time_steps(bench: Bench, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        bench.step()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        bench.step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


# --- 3. peak memory in a fresh process ----------------------------------------------------------

def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def child(variant: str, args) -> None:
    """Run in a fresh process: print one JSON line with the peak of one (warm) step."""
    torch.set_num_threads(args.threads)
    bench = Bench(variant, args, network=args.network)
    res = {"variant": variant}
    if bench.dev.type == "cuda":
        bench.step()  # warm-up: cuDNN workspaces, autotuning
        gc.collect()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        bench.step()
        res["step_s"] = time.perf_counter() - t0
        res["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        res["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        res["baseline_allocated_bytes"] = base  # weights, last step's gradients, the batch
        free, total = torch.cuda.mem_get_info()  # the allocator still holds the step's blocks
        res["device_used_bytes"] = total - free  # as nvidia-smi counts: context, cache, all
    else:
        rss0 = _status("VmRSS")
        t0 = time.perf_counter()
        bench.step()  # cold step: one-time allocations (thread pools, oneDNN caches)
        res["first_step_s"] = time.perf_counter() - t0
        res["first_step_peak_bytes"] = _status("VmHWM") - rss0
        gc.collect()
        base = _status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            res["hwm_reset"] = True
        except OSError:
            res["hwm_reset"] = False  # then VmHWM may hold the cold step's peak
        t0 = time.perf_counter()
        bench.step()
        res["step_s"] = time.perf_counter() - t0
        res["peak_bytes"] = _status("VmHWM") - base
        res["baseline_rss_bytes"] = base
    print_result(res)


def run_child(variant: str, args, network: bool, timeout: float | None = None) -> dict:
    env = dict(os.environ)
    if args.malloc == "fixed":
        # A fixed threshold turns off glibc's dynamic mmap threshold: every allocation of 64 KiB
        # or more is its own mmap and is unmapped on free, so RSS follows live tensors.
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
        env["MALLOC_TRIM_THRESHOLD_"] = "131072"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant,
           "--batch", str(args.batch), "--threads", str(args.threads), "--device", args.device]
    cmd += ["--network"] if network else []
    cmd += ["--bf16"] if args.bf16 else []
    cmd += ["--channels-last"] if args.channels_last else []
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                         timeout=timeout).stdout
    res = read_result(out)
    if res is None:
        raise RuntimeError(f"layer_memory --child {variant} printed no RESULT line")
    return res


# --- driver -------------------------------------------------------------------------------------

def layer_report(args) -> None:
    parts = args.parts
    rows = {v: {} for v in LAYER_VARIANTS}
    L = LAYER
    for v in LAYER_VARIANTS:
        mode = "sunn" if v.startswith("sunn") else v
        rows[v]["est"] = args.batch * layer_cost(L["N"], L["P"], L["K"], L["M"],
                                                 L["projection"], 32, mode).activation_bytes
    if "saved" in parts:
        for v in LAYER_VARIANTS:
            rows[v]["saved"] = saved_tensors(Bench(v, args))
            gc.collect()
    if "time" in parts:
        best = {v: float("inf") for v in LAYER_VARIANTS}
        for rnd in range(args.rounds):
            for v in LAYER_VARIANTS:
                bench = Bench(v, args)
                t = time_steps(bench, args.warmup, args.iters)
                print(f"  time round {rnd} {v}: {t:.3f} s", file=sys.stderr, flush=True)
                best[v] = min(best[v], t)
                del bench
                gc.collect()
        for v in LAYER_VARIANTS:
            rows[v]["time"] = best[v]
    if "peak" in parts:
        for v in LAYER_VARIANTS:
            rows[v]["peak"] = run_child(v, args, network=False)
            print(f"  peak {v}: {rows[v]['peak']}", file=sys.stderr, flush=True)

    print(f"\n### Layer {{N=240, P=20, K=2, M=1}} + projection, batch {args.batch}, 32x32, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, {args.device}\n")
    head = ["variant"]
    if "saved" in parts:
        head += ["saved MB (excl. x, y)", "saved MB (excl. x)", "cost.py MB", "saved / SUNN"]
    if "peak" in parts:
        head += ["peak step MB", "peak / SUNN"]
    if "time" in parts:
        head += ["step s", "time / SUNN"]
    print(table_head(head))
    s = rows["sunn"]
    for v in LAYER_VARIANTS:
        r = rows[v]
        cells = [LAYER_LABELS[v]]
        if "saved" in parts:
            a = r["saved"]["activation"] + r["saved"]["other"]
            cells += [megabytes(a), megabytes(a + r["saved"]["output"]), megabytes(r["est"]),
                      f"{(a + r['saved']['output']) / (s['saved']['activation'] + s['saved']['other'] + s['saved']['output']):.2f}x"]
        if "peak" in parts:
            cells += [megabytes(r["peak"]["peak_bytes"]),
                      f"{r['peak']['peak_bytes'] / s['peak']['peak_bytes']:.2f}x"]
        if "time" in parts:
            cells += [f"{r['time']:.3f}", f"{r['time'] / s['time']:.2f}x"]
        print(table_row(cells))
    if "saved" in parts:
        print("\nsaved-tensor detail (bytes): " + json.dumps(
            {v: rows[v]["saved"] for v in LAYER_VARIANTS}))
    if "peak" in parts:
        print("peak detail: " + json.dumps({v: rows[v]["peak"] for v in LAYER_VARIANTS}))


def network_report(args) -> None:
    rows = {}
    for v in NET_VARIANTS:
        name, _, mode = v.partition(":")
        rows[v] = {"est": args.batch * estimate(model_spec(name), 32,
                                                mode or "recompute").activation_bytes}
        if "saved" in args.parts:
            rows[v]["saved"] = saved_tensors(Bench(v, args, network=True))
            gc.collect()
        if "peak" in args.parts:
            rows[v]["peak"] = run_child(v, args, network=True)
            print(f"  net peak {v}: {rows[v]['peak']}", file=sys.stderr, flush=True)
    print(f"\n### Whole network, batch {args.batch}, 32x32, "
          f"{'bf16 autocast' if args.bf16 else 'float32'}, {args.device}\n")
    head = ["model", "saved MB (hooks)", "cost.py MB", "peak step MB", "peak / SUNN-15",
            "step s (1 warm step)"]
    print(table_head(head))
    base = rows["sunn15"].get("peak", {}).get("peak_bytes")
    for v in NET_VARIANTS:
        r = rows[v]
        saved = r.get("saved")
        a = (saved["activation"] + saved["other"] + saved["output"] + saved["input"]) if saved else None
        peak = r.get("peak", {})
        cells = [v, megabytes(a) if a is not None else "-", megabytes(r["est"]),
                 megabytes(peak["peak_bytes"]) if peak else "-",
                 f"{peak['peak_bytes'] / base:.2f}x" if peak and base else "-",
                 f"{peak['step_s']:.2f}" if peak else "-"]
        print(table_row(cells))
    if "peak" in args.parts:
        print("network peak detail: " + json.dumps({v: rows[v].get("peak") for v in NET_VARIANTS}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="saved,time,peak,network",
                   help="comma list of saved, time, peak, network")
    p.add_argument("--variants", default=",".join(LAYER_VARIANTS),
                   help="comma list of layer variants (sunn is always included)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--malloc", choices=["fixed", "default"], default="fixed",
                   help="glibc malloc settings of the peak-RSS subprocesses (CPU)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--network", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.parts = set(args.parts.split(","))
    LAYER_VARIANTS[:] = ["sunn"] + [v for v in args.variants.split(",") if v and v != "sunn"]
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args)
        return
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"{args.threads} threads, device {args.device}, malloc {args.malloc}")
    if args.parts & {"saved", "time", "peak"}:
        layer_report(args)
    if "network" in args.parts:
        args.parts |= {"saved", "peak"}
        network_report(args)


if __name__ == "__main__":
    main()
