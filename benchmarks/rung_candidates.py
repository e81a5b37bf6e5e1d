"""Rung results that predict the end: which early measurement ranks configurations as the final
val_acc does, and at what cost in epochs?

What it records
    The configurations and training seeds of `rank_correlation.py` (the digits problem of
    `digits_problem.py`: 24 configurations, seeds 0-2, 12 epochs, step schedule with the lr / 10
    from epoch 6 and / 100 from epoch 9), each trained to the end with the real loop, one thread
    per run. At every epoch e, beside the run's own val_acc (`plain`), for the same run:
    - `ema`: the val_acc of an exponential moving average of the weights and BatchNorm buffers
      (decay 0.9 per step, 15 steps per epoch): any-time averaging, no extra training;
    - `anneal_<L>`: an annealing branch (`trainers/anneal.py`): a copy of the model and optimizer
      trained L epochs with the lr falling linearly from the run's to zero, evaluated, thrown
      away; at epochs 1 to 6 (the first rungs ASHA could use), L = 0.25 and 1;
    - `compressed_3`: the configuration trained from scratch for 3 epochs with the schedule
      compressed to them (the restart that successive halving with restarts pays at a rung).
    Rows (config, seed, epoch, method, val_acc, cost_epochs: the extra epochs the measurement
    cost) go to `benchmarks/data/rank_candidates.csv`, a run at a time. `rank_correlation.py
    --replay` computes the tables from it.

Usage
    python benchmarks/rung_candidates.py [--workers 2] [--seeds 0 1 2] [--configs 24]

Machine and result: benchmarks/RESULTS.md, "Rung results that predict the end".
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

from harness import spawn_pool

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "data" / "rank_candidates.csv"
FIELDS = ["config", "seed", "epoch", "method", "val_acc", "cost_epochs"]
BRANCH_EPOCHS = (1, 2, 3, 4, 5, 6)
BRANCH_LENGTHS = (0.25, 1.0)
EMA_DECAY = 0.9
COMPRESSED = 3


def run_one(job: tuple[int, dict, int]) -> list[dict]:
    """Train configuration `values` with training seed `seed`, measuring every candidate."""
    cid, values, seed = job
    import torch
    from rank_correlation import problem_run
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from trainers.anneal import branch_steps, linear_decay, run_branch
    from trainers.loop import train

    torch.set_num_threads(1)
    cfg, data = problem_run(values, seed)
    t = time.time()
    rows: list[dict] = []
    ema: dict = {}

    def row(epoch, method, acc, cost=0.0):
        rows.append({"config": cid, "seed": seed, "epoch": epoch, "method": method,
                     "val_acc": round(acc, 6), "cost_epochs": round(cost, 4)})

    def on_step(epoch, step, model):
        # Before each step: fold in the weights of the previous one (the last step of an epoch
        # is folded in after it, in after_epoch). Negative steps are a branch's: not the run.
        if step < 0:
            return
        if "m" not in ema:
            ema["m"] = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(EMA_DECAY),
                                     use_buffers=True)
        elif epoch > 1 or step > 0:
            ema["m"].update_parameters(model)

    def after_epoch(state) -> dict:
        ema["m"].update_parameters(state.model)
        row(state.epoch, "ema", state.evaluate(ema["m"].module)[1])
        if state.epoch in BRANCH_EPOCHS:
            for length in BRANCH_LENGTHS:
                steps = branch_steps(length, state.steps_per_epoch)
                (_, _, acc), = run_branch(state, steps, linear_decay(state.lr, steps))
                row(state.epoch, f"anneal_{length:g}", acc, steps / state.steps_per_epoch)
        return {}

    res = train(cfg, data=data, log=lambda m: None, on_step=on_step, after_epoch=after_epoch)
    for m in res.history:
        row(m["epoch"], "plain", m["val_acc"])
    for e in range(len(res.history) + 1, cfg.epochs + 1):  # a non-finite loss scores 0 after
        row(e, "plain", 0.0)
    short = train(cfg.model_copy(update={"epochs": COMPRESSED}), data=data, log=lambda m: None)
    row(COMPRESSED, f"compressed_{COMPRESSED}",
        short.history[-1]["val_acc"] if short.status == "completed" else 0.0, COMPRESSED)
    print(f"config {cid} seed {seed}: final {res.history[-1]['val_acc']:.4f} "
          f"({time.time() - t:.0f} s, load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return rows


TAIL_EPOCHS = (1, 2, 3, 4)
TAIL_LENGTHS = (1.0, 2.0)


def run_tails(job: tuple[int, dict, int, int]) -> list[dict]:
    """`tail_<L>`: a branch of L epochs at the schedule's lower rates (`anneal.schedule_tail`:
    half at lr/10, half at lr/100 before the drops) after epochs 1-4; with `until` < 12 the run
    stops there (its plain curve already recorded)."""
    cid, values, seed, until = job
    import torch
    from rank_correlation import problem_run

    from trainers.anneal import branch_steps, run_branch, schedule_tail
    from trainers.loop import train

    torch.set_num_threads(1)
    cfg, data = problem_run(values, seed)
    t, rows = time.time(), []

    def after_epoch(state) -> dict:
        if state.epoch in TAIL_EPOCHS:
            for length in TAIL_LENGTHS:
                steps = branch_steps(length, state.steps_per_epoch)
                (_, _, acc), = run_branch(state, steps, schedule_tail(state, steps))
                rows.append({"config": cid, "seed": seed, "epoch": state.epoch,
                             "method": f"tail_{length:g}", "val_acc": round(acc, 6),
                             "cost_epochs": round(steps / state.steps_per_epoch, 4)})
        return {}

    res = train(cfg, data=data, log=lambda m: None, after_epoch=after_epoch,
                on_epoch=lambda m, c: m["epoch"] >= until)
    if until >= cfg.epochs:
        rows += [{"config": cid, "seed": seed, "epoch": m["epoch"], "method": "plain",
                  "val_acc": round(m["val_acc"], 6), "cost_epochs": 0.0} for m in res.history]
        rows += [{"config": cid, "seed": seed, "epoch": e, "method": "plain", "val_acc": 0.0,
                  "cost_epochs": 0.0} for e in range(len(res.history) + 1, cfg.epochs + 1)]
    print(f"tails: config {cid} seed {seed} ({time.time() - t:.0f} s, load "
          f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    import rank_correlation

    ap = rank_correlation.sample_arguments(__doc__, 24)
    ap.add_argument("--tails", action="store_true",
                    help="record the tail_<L> branches (and the plain curve of seeds that lack it)")
    args = ap.parse_args()

    configs = rank_correlation.sample_configs(args.configs, args.sample_seed)
    if args.tails:
        return record_tails(configs, args.seeds, args.workers)
    done = set()
    if OUT.exists():  # a run cut short: keep what it recorded, train the rest
        with OUT.open() as f:
            done = {(int(r["config"]), int(r["seed"])) for r in csv.DictReader(f)
                    if r["method"] == f"compressed_{COMPRESSED}"}
    else:
        with OUT.open("w", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writeheader()
    jobs = [(i, c, s) for s in args.seeds for i, c in enumerate(configs) if (i, s) not in done]
    t, load0 = time.time(), os.getloadavg()[0]
    with spawn_pool(args.workers) as pool:
        for rows in pool.map(run_one, jobs):
            append_rows(rows)
    print(f"{len(jobs)} runs in {time.time() - t:.0f} s, load average {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f}", file=sys.stderr)


def record_tails(configs: list[dict], seeds: list[int], workers: int) -> None:
    recorded = set()
    with OUT.open() as f:
        for r in csv.DictReader(f):
            recorded.add((int(r["config"]), int(r["seed"]), r["method"], int(r["epoch"])))
    last = max(TAIL_EPOCHS)
    jobs = [(i, c, s, last if (i, s, "plain", 12) in recorded else 12)
            for s in seeds for i, c in enumerate(configs)
            if (i, s, f"tail_{TAIL_LENGTHS[-1]:g}", last) not in recorded]
    t = time.time()
    with spawn_pool(workers) as pool:
        for rows in pool.map(run_tails, jobs):
            append_rows(rows)
    print(f"{len(jobs)} runs in {time.time() - t:.0f} s", file=sys.stderr)



def append_rows(rows: list[dict]) -> None:
    """One run's rows at the end of the CSV, as it finishes: a run cut short loses only itself."""
    with OUT.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=FIELDS).writerows(rows)


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
