"""Record a learning-curve table for the search simulator: a space-filling sample of a space's
configurations, each trained to the end on a few training seeds with the real training loop.

What it records
    `--configs` configurations (a scrambled Sobol sample, `--sample-seed`, in the space's own
    coordinates: `curve_table.py`) of `--space` set up as the problem (`--epochs`, `--schedule`,
    `--train-fraction`, `--val-fraction`, `--batch-size`, `--device`; the defaults are the digits
    problem of `digits_problem.py`), each trained once per seed of `--seeds`, one thread per run,
    `--workers` runs at a time. For every epoch: val_acc, train_loss, seconds, and after the
    epochs of `--branch-at` an annealing branch of each length in `--branch-lengths` (the
    trainer's own `AnnealingBranch`, as a search's trial runs it at a rung; a branch leaves the
    run untouched, so one run serves every length). Seeds are recorded in turn: a table with
    seed 0 complete is usable before seed 1 starts.

    Resumable: the folder's `meta.json` fixes the problem; run the same command again and it
    trains only the runs not yet in `curves.csv` (a run is written when it ends, so a kill loses
    the runs in flight, nothing else). Another problem into the same folder is refused.

Usage
    python benchmarks/record_curves.py                       # the digits table, step schedule
    python benchmarks/record_curves.py --schedule cosine --out benchmarks/data/curves/digits_cosine
    python benchmarks/record_curves.py --space cifar_gunn15.yaml --epochs 30 --train-fraction 1 \\
        --val-fraction 0.1 --batch-size 64 --device cuda --branch-at 1 2 3 5 10 15 \\
        --branch-lengths 5 --out benchmarks/data/curves/cifar_gunn15     # on a GPU machine

Machine, cost and the table's size: benchmarks/RESULTS.md, "Recorded curves".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "data" / "curves" / "digits_step"
# The epochs a rung of the candidate defaults can fall on for 12 epochs (first rung 1-4,
# reduction factor 2-4, several brackets): 1, 2, 3, 4, 6, 8, 9; at 9 the step schedule is at its
# last rate already, so a branch has nothing to anneal (the run's own val_acc is the rung's).
BRANCH_AT = (1, 2, 3, 4, 6, 8)
BRANCH_LENGTHS = (1.0, 2.0)  # 2: a sixth of 12 epochs, today's default; 1: the cheaper one


def problem_args(args) -> dict:
    """What fixes the table's problem (meta.json)."""
    return {"space": args.space, "epochs": args.epochs, "schedule": args.schedule,
            "train_fraction": args.train_fraction, "val_fraction": args.val_fraction,
            "batch_size": args.batch_size, "configs": args.configs,
            "sample_seed": args.sample_seed, "branch_at": sorted(args.branch_at),
            "branch_lengths": sorted(args.branch_lengths)}


def problem_space(meta: dict, seed: int):
    from digits_problem import problem_data

    from gunn_search.space import parse_space

    data = problem_data(seed, meta["epochs"], meta["schedule"], meta["space"],
                        meta["train_fraction"], meta["val_fraction"], meta["batch_size"])
    return parse_space(data, meta["space"])


_DATA: dict = {}


def run_one(job: tuple[int, dict, int, dict, str]) -> list[dict]:
    """Train configuration `values` with training seed `seed` to the end: its rows."""
    cid, values, seed, meta, device = job
    import torch
    from curve_table import NONFINITE, anneal_col
    from digits_problem import run_config

    from trainers.anneal import AnnealingBranch, annealed_key
    from trainers.loop import load_data, train

    torch.set_num_threads(1)
    space = problem_space(meta, seed)
    cfg = run_config(space, values).model_copy(update={"device": device})
    key = cfg.data.model_dump_json()
    if key not in _DATA:
        _DATA[key] = load_data(cfg.data, device)
    branches = [AnnealingBranch(frozenset(meta["branch_at"]), L) for L in meta["branch_lengths"]]
    extra: dict[int, dict] = {}

    def after_epoch(state) -> dict:
        out = {}
        for b in branches:
            t = time.perf_counter()
            got = b(state)
            if got:
                out[anneal_col(b.epochs)] = round(got[annealed_key(state.data.eval_name)], 6)
                out[anneal_col(b.epochs) + "_seconds"] = round(time.perf_counter() - t, 3)
        extra[state.epoch] = out
        return {}

    t0 = time.time()
    res = train(cfg, data=_DATA[key], log=lambda m: None, after_epoch=after_epoch)
    rows = []
    for m in res.history:
        status = m.get("status", "")
        rows.append({"config": cid, "seed": seed, "epoch": m["epoch"],
                     "val_acc": 0.0 if status else round(m["val_acc"], 6),
                     "train_loss": "" if status else round(m["train_loss"], 6),
                     "seconds": round(m["epoch_seconds"], 3), "status": status,
                     **extra.get(m["epoch"], {})})
    for e in range(len(res.history) + 1, cfg.epochs + 1):  # after a non-finite loss: 0
        rows.append({"config": cid, "seed": seed, "epoch": e, "val_acc": 0.0, "train_loss": "",
                     "seconds": 0.0, "status": NONFINITE})
    print(f"config {cid} seed {seed}: final {rows[-1]['val_acc']:.4f} "
          f"({time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    import concurrent.futures

    import curve_table as ct
    from digits_problem import BATCH_SIZE, EPOCHS, TRAIN_FRACTION, VAL_FRACTION
    from harness import spawn_pool

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="smoke.yaml", help="space file (default: smoke.yaml)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--schedule", default="step", choices=["step", "cosine", "constant"])
    ap.add_argument("--train-fraction", type=float, default=TRAIN_FRACTION)
    ap.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    ap.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    ap.add_argument("--device", default="cpu", help="where runs train (cpu, cuda); not part of "
                    "the problem: a table may be recorded on several machines")
    ap.add_argument("--configs", type=int, default=256)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    ap.add_argument("--branch-at", type=int, nargs="*", default=list(BRANCH_AT))
    ap.add_argument("--branch-lengths", type=float, nargs="*", default=list(BRANCH_LENGTHS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the table's folder")
    ap.add_argument("--limit", type=int, default=None, help="train at most this many runs now")
    args = ap.parse_args(argv)

    meta = problem_args(args)
    old = ct.read_meta(args.out)
    if old is not None and old != meta:
        diff = ", ".join(f"{k} {old.get(k)!r} (asked {meta.get(k)!r})"
                         for k in meta if old.get(k) != meta.get(k))
        print(f"record_curves: {args.out} holds another problem: {diff}; give another --out",
              file=sys.stderr)
        return 2
    try:
        space = problem_space(meta, 0)
    except Exception as e:  # a space file's error is the user's: one line
        print(f"record_curves: {args.space}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    configs = ct.space_filling_sample(space, args.configs, args.sample_seed)
    if old is None:
        ct.write_meta(args.out, meta)
        ct.write_configs(args.out, configs)
    done = ct.completed_runs(args.out, args.epochs)
    if (args.out / "curves.csv").exists():  # drop what a kill left half written
        ct.rewrite_curves(args.out, meta["branch_lengths"], done)
    jobs = [(i, c, s, meta, args.device) for s in args.seeds for i, c in enumerate(configs)
            if (i, s) not in done][:args.limit]
    print(f"record_curves: {len(done)} runs recorded in {args.out}, {len(jobs)} to train",
          file=sys.stderr, flush=True)
    t = time.time()
    with spawn_pool(args.workers) as pool:
        # Submitted a few at a time, in order: the first seed's runs finish first.
        pending: set = set()
        it = iter(jobs)
        finished = 0
        while True:
            while len(pending) < 2 * args.workers:
                job = next(it, None)
                if job is None:
                    break
                pending.add(pool.submit(run_one, job))
            if not pending:
                break
            ready, pending = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in ready:
                ct.append_run(args.out, meta["branch_lengths"], fut.result())
                finished += 1
    print(f"record_curves: {finished} runs in {time.time() - t:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    sys.exit(main())
