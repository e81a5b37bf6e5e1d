"""Training throughput of GUNN-15 and SUNN-15 through the real training loop.

Measures images/s of `trainers.train` (augmentation on the device, SGD step, per-iteration lr)
at batch 64 on 32x32 synthetic CIFAR-sized data, for SUNN-15 (grouped bottleneck), GUNN-15 with
Algorithm 1 in `recompute` and `keep` modes, and the naive GUNN for reference. On CUDA it uses
bf16 autocast and channels_last (the trainer's defaults) and also reports peak memory.

Machine and result: benchmarks/RESULTS.md, "Layer memory, step time and throughput" (2026-11-23,
the 2-core CPU VM, batch 64: SUNN-15 22.0 images/s, GUNN-15 recompute 22.7, keep 25.0); on a
GPU, `gpu_check.py` measures it (compile off and on) and writes its own section there.

    python benchmarks/throughput.py [--steps 6] [--device cpu|cuda] [--models sunn15,gunn15]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from trainers.config import parse_config
from trainers.loop import train


def measure(model: str, mode: str, device: str, steps: int, batch: int, threads: int,
            over: dict | None = None) -> dict:
    """images/s of epoch 2 (epoch 1 warms up); `over` replaces top-level config entries (e.g.
    `compile`, `amp`, or `model` with an explicit architecture, then `model` is only a label)."""
    cfg = parse_config({
        "model": {"name": model, "gunn_mode": mode},
        "data": {"name": "synthetic", "synthetic_train_size": batch * (steps + 1),
                 "synthetic_test_size": 64},
        "epochs": 2, "batch_size": batch, "device": device, "out_dir": None,
        "num_threads": threads, "optim": {"lr": 0.05}, **(over or {}),
    })
    history = []
    t0 = time.perf_counter()
    # Epoch 1 warms up (allocator, oneDNN/cuDNN kernel choice, compiling); epoch 2 is measured.
    train(cfg, on_epoch=lambda m, _: history.append(m), log=lambda _: None)
    m = history[-1]
    return {"model": model, "mode": mode if model.startswith("gunn") else "grouped",
            "images_per_s": m["images_per_s"], "peak_memory_bytes": m["peak_memory_bytes"],
            "first_epoch_s": history[0]["epoch_seconds"], "wall_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--runs", default="sunn15:grouped,gunn15:recompute,gunn15:keep,gunn15:naive")
    args = p.parse_args()
    dev = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"device {args.device} ({dev}), torch {torch.__version__}, threads {args.threads}, "
          f"batch {args.batch}, {args.steps} measured steps")
    print("| model | GUNN mode | images/s | peak memory (MB) |")
    print("|---|---|---:|---:|")
    for run in args.runs.split(","):
        model, mode = run.split(":")
        r = measure(model, "recompute" if mode == "grouped" else mode, args.device, args.steps,
                    args.batch, args.threads)
        print(f"| {r['model']} | {r['mode']} | {r['images_per_s']:.1f} | "
              f"{r['peak_memory_bytes'] / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
