"""Schedule-free SGD as an any-time rung result: does its accuracy mid-training rank
configurations as the end does, and does its final accuracy hold up against the step schedule?

What it measures
    The 24 configurations of `rank_correlation.py` (the digits problem of `digits_problem.py`,
    12 epochs), training seed 0, each trained once more with `schedulefree.SGDScheduleFree`
    (Defazio et al. 2024: the iterate is evaluated at an average that needs no lr schedule, so
    every epoch's result is an end-of-training result) in place of SGD + the step schedule: the
    configuration's lr, momentum and weight decay, a linear warmup over the first 5 % of steps
    (its authors' advice; the step schedule has none here), the same model, batches, batch order
    and augmentation (`trainers.loop.training_batch`, `sgd_step`). After each epoch the model is
    evaluated at the averaged weights (`opt.eval()`), with BatchNorm's statistics recomputed for
    them over the training set (`torch.optim.swa_utils.update_bn`, as its authors advise for
    BatchNorm networks). Rows (config, seed, epoch, val_acc) go to
    `benchmarks/data/rank_schedule_free.csv`; the report compares them with the step schedule's
    recorded curves (`rank_candidates.csv`, `plain`, the same seed and machine).

Usage
    python benchmarks/schedule_free.py [--configs 24]     # train (resumes), then report
    python benchmarks/schedule_free.py --report           # the tables from the CSV

Machine and result: benchmarks/RESULTS.md, "Rung results that predict the end".
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "data" / "rank_schedule_free.csv"
FIELDS = ["config", "seed", "epoch", "val_acc"]
SEED, WARMUP_SHARE = 0, 0.05
RESTARTS, BUDGET, REPEATS = (2, 3), 72, 400  # the replay of rank_correlation.py --summary


def train_schedule_free(values: dict, seed: int) -> list[float]:
    """val_acc after each epoch of configuration `values` trained with schedule-free SGD."""
    import schedulefree
    import torch
    from rank_correlation import problem_run
    from torch.optim.swa_utils import update_bn

    from trainers.data import batches, normalize
    from trainers.loop import evaluate, sgd_step, training_batch
    from trainers.model.network import build_model

    torch.set_num_threads(1)
    cfg, data = problem_run(values, seed)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.network_spec(data.num_classes), gunn_mode=cfg.model.gunn_mode)
    n = data.train_x.shape[0]
    bs = min(cfg.batch_size, n)
    steps = (n // bs) * cfg.epochs
    opt = schedulefree.SGDScheduleFree(model.parameters(), lr=cfg.optim.lr,
                                       momentum=cfg.optim.momentum,
                                       weight_decay=cfg.optim.weight_decay,
                                       warmup_steps=round(WARMUP_SHARE * steps))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    flip = cfg.data.flip if cfg.data.flip is not None else data.name != "digits"
    plain = [normalize(data.train_x[s:s + bs], data.mean, data.std) for s in range(0, n, bs)]
    out = []
    for _ in range(cfg.epochs):
        model.train()
        opt.train()
        for idx in batches(n, bs, gen, drop_last=True):
            x, y = training_batch(data, idx, gen, flip, cfg.data.cyclic_shift, "cpu", False)
            loss, _ = sgd_step(model, opt, x, y, nullcontext())
            if not torch.isfinite(loss):
                return out + [0.0] * (cfg.epochs - len(out))  # diverged: scores 0, as the loop
        opt.eval()
        update_bn(plain, model)
        out.append(evaluate(model, data.eval_x, data.eval_y, data.mean, data.std)[1])
    return out


def recorded() -> dict[int, list[float]]:
    if not OUT.exists():
        return {}
    curves: dict[int, dict[int, float]] = {}
    with OUT.open() as f:
        for r in csv.DictReader(f):
            curves.setdefault(int(r["config"]), {})[int(r["epoch"])] = float(r["val_acc"])
    return {c: [v[e] for e in sorted(v)] for c, v in curves.items()}


def train_all(n: int) -> None:
    import rank_correlation

    # the configurations rung_candidates.py trained (its --sample-seed default, 0)
    configs = rank_correlation.sample_configs(n, 0)
    done = recorded()
    new = not OUT.exists()
    with OUT.open("a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        for cid, values in enumerate(configs):
            if cid in done:
                continue
            t = time.time()
            accs = train_schedule_free(values, SEED)
            w.writerows({"config": cid, "seed": SEED, "epoch": e + 1, "val_acc": round(a, 6)}
                        for e, a in enumerate(accs))
            f.flush()
            print(f"config {cid}: final {accs[-1]:.4f} ({time.time() - t:.0f} s, load "
                  f"{os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)


def report() -> str:
    import rung_replay
    from scipy.stats import spearmanr

    sf = recorded()
    step = rung_replay.load_candidates(REPO / "benchmarks" / "data" / "rank_candidates.csv")[0]
    step = step[SEED]
    cfgs = sorted(c for c in sf if c in step)
    finals_sf = [sf[c][-1] for c in cfgs]
    finals_step = [step[c][-1] for c in cfgs]
    lines = [f"Schedule-free SGD, {len(cfgs)} configurations, training seed {SEED}: final val_acc "
             f"mean {statistics.mean(finals_sf):.4f}, best {max(finals_sf):.4f} (step schedule: "
             f"mean {statistics.mean(finals_step):.4f}, best {max(finals_step):.4f}); Spearman "
             f"of the two finals {spearmanr(finals_sf, finals_step).statistic:.2f}.", "",
             "| epoch | schedule-free val_acc vs its own final | ... vs the step schedule's final "
             "| step schedule's own val_acc vs its final |", "|---:|---:|---:|---:|"]
    for e in range(1, len(sf[cfgs[0]])):
        now = [sf[c][e - 1] for c in cfgs]
        lines.append(f"| {e} | {spearmanr(now, finals_sf).statistic:.2f} | "
                     f"{spearmanr(now, finals_step).statistic:.2f} | "
                     f"{spearmanr([step[c][e - 1] for c in cfgs], finals_step).statistic:.2f} |")
    # As a rung result: a schedule-free run of k epochs stands in for the configuration
    # (successive halving with restarts: a promoted configuration trains from scratch on its
    # own schedule; the k epochs count). The step curves are what the search finds.
    curves = {SEED: {c: step[c] for c in cfgs}}
    for k in RESTARTS:
        table = {SEED: {c: {k: (sf[c][k - 1], float(k))} for c in cfgs}}
        m = rung_replay.Method(f"schedule-free, {k} epochs", table, restart=k)
        text, _ = rung_replay.replay_table(curves, BUDGET, [(None, 0)] + [(k, r) for r in (2, 3, 4)],
                                           REPEATS, m)
        lines += ["", text]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=24)
    ap.add_argument("--report", action="store_true", help="the tables from the CSV only")
    args = ap.parse_args()
    if not args.report:
        train_all(args.configs)
    print(report())


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
