"""Does early val_acc rank configurations the way the final one does? (ASHA's premise.)

What it measures
    A fixed sample of configurations (``--configs``, drawn by Optuna's RandomSampler with
    ``--sample-seed`` from the problem in `digits_problem.py`: smoke.yaml's space on a reduced
    digits, 12 epochs, step schedule) is trained to full length, once per training seed
    (``--seeds``; the seed sets the initial weights, data order and augmentation), with the real
    training loop (`trainers.loop.train`, one thread each, ``--workers`` at a time). Each
    configuration's per-epoch val_acc is kept in ``benchmarks/data/rank_curves.csv`` and its
    sampled values in ``benchmarks/data/rank_configs.csv`` (``_cosine`` before ``.csv`` with
    ``--schedule cosine``; ``--replay`` recomputes every table from those files without training).

    For every epoch e and seed: Spearman's rho and Kendall's tau between val_acc at e and at the
    last epoch, across configurations (mean, standard deviation and range over seeds). For the
    rung at that epoch and reduction factor r (2, 3, 4): in how many seeds the configuration with
    the best final val_acc is among the top 1/r there (the ones ASHA would promote), and for
    r = 3 the regret: best final val_acc overall minus the best final among the ones kept. "Seed to seed": the same
    correlations between the final val_acc of two training seeds (every pair), i.e. how far a
    perfect predictor of one run could agree with another: the noise ceiling.

Usage
    python benchmarks/rank_correlation.py [--configs 32] [--seeds 0 1 2] [--workers 2]
    python benchmarks/rank_correlation.py --replay        # tables from the recorded CSVs

Machine and result: see benchmarks/RESULTS.md, "Rank correlation".
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import rung_replay
import search_efficiency as efficiency  # its spread
from harness import spawn_pool

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data"


def data_files(schedule: str) -> tuple[Path, Path]:
    """The recorded curves and configurations of a schedule (step: the names first used)."""
    tail = "" if schedule == "step" else f"_{schedule}"
    return DATA / f"rank_curves{tail}.csv", DATA / f"rank_configs{tail}.csv"


def sample_configs(n: int, sample_seed: int) -> list[dict]:
    """`n` searched values (config paths only) drawn at random from the problem's space."""
    from digits_problem import problem_space

    from gunn_search.space import example_configs

    space = problem_space(0)
    return [{k: v for k, v in values.items() if k in space.config_paths}
            for values in example_configs(space, n, seed=sample_seed)]


_DATA = {}


def problem_run(values: dict, seed: int, schedule: str = "step"):
    """(config, data) of configuration `values` trained with seed `seed` on the problem, one
    thread, no checkpoints; the data loaded once per process."""
    from digits_problem import problem_space, run_config

    from trainers.loop import load_data

    cfg = run_config(problem_space(seed, schedule=schedule), values)
    key = cfg.data.model_dump_json()
    if key not in _DATA:
        _DATA[key] = load_data(cfg.data)
    return cfg, _DATA[key]


def train_one(job: tuple[int, dict, int, str]) -> list[dict]:
    """Train configuration `values` with training seed `seed`; its per-epoch rows."""
    cid, values, seed, schedule = job
    from trainers.loop import train

    cfg, data = problem_run(values, seed, schedule)
    t = time.time()
    res = train(cfg, data=data, log=lambda msg: None)
    rows = [{"config": cid, "seed": seed, "epoch": m["epoch"], "val_acc": round(m["val_acc"], 6),
             "train_loss": round(m["train_loss"], 6)} for m in res.history]
    # A run stopped by a non-finite loss scores 0 from then on, as the search tells the searcher.
    for e in range(len(res.history) + 1, cfg.epochs + 1):
        rows.append({"config": cid, "seed": seed, "epoch": e, "val_acc": 0.0, "train_loss": ""})
    print(f"config {cid} seed {seed}: final {rows[-1]['val_acc']:.4f} ({res.status}, "
          f"{time.time() - t:.0f} s, load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    return rows


def record(n: int, sample_seed: int, seeds: list[int], workers: int, schedule: str) -> None:
    curves_csv, configs_csv = data_files(schedule)
    configs = sample_configs(n, sample_seed)
    DATA.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for c in configs for k in c})
    with configs_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", *keys])
        for i, c in enumerate(configs):
            w.writerow([i, *(c.get(k, "") for k in keys)])
    jobs = [(i, c, s, schedule) for s in seeds for i, c in enumerate(configs)]
    rows = []
    with spawn_pool(workers) as pool:
        for part in pool.map(train_one, jobs):
            rows.extend(part)
    rows.sort(key=lambda r: (r["seed"], r["config"], r["epoch"]))
    with curves_csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["config", "seed", "epoch", "val_acc", "train_loss"])
        w.writeheader()
        w.writerows(rows)


def load_curves(path: Path) -> dict[int, dict[int, list[float]]]:
    """{seed: {config: [val_acc at epoch 1, 2, ...]}} from the recorded CSV."""
    out: dict[int, dict[int, list[float]]] = {}
    with path.open() as f:
        for r in csv.DictReader(f):
            out.setdefault(int(r["seed"]), {}).setdefault(int(r["config"]), []).append(
                float(r["val_acc"]))
    return out


def spread(xs: list[float]) -> str:
    return efficiency.spread(xs, ".2f", with_range=True)


def analyse(curves: dict[int, dict[int, list[float]]]) -> str:
    from scipy.stats import kendalltau, spearmanr

    seeds = sorted(curves)
    epochs = len(next(iter(curves[seeds[0]].values())))
    n_cfg = len(curves[seeds[0]])
    lines = [f"{n_cfg} configurations x {len(seeds)} training seeds ({', '.join(map(str, seeds))}), "
             f"{epochs} epochs each.", "",
             "| epoch | Spearman rho vs final, mean ± sd (range) | Kendall tau vs final | "
             "final best kept by the top 1/2, 1/3, 1/4 | regret of the top 1/3, mean (max) |",
             "|---:|---|---|---|---:|"]
    for e in range(1, epochs):
        rho, tau, hits, regret = [], [], {2: 0, 3: 0, 4: 0}, []
        for s in seeds:
            cfgs = sorted(curves[s])
            early = [curves[s][c][e - 1] for c in cfgs]
            final = [curves[s][c][-1] for c in cfgs]
            rho.append(spearmanr(early, final).statistic)
            tau.append(kendalltau(early, final).statistic)
            order = sorted(range(len(cfgs)), key=lambda i: -early[i])
            best = max(final)
            for r in hits:
                kept = order[:max(1, len(cfgs) // r)]
                hits[r] += any(final[i] == best for i in kept)
                if r == 3:
                    regret.append(best - max(final[i] for i in kept))
        lines.append(f"| {e} | {spread(rho)} | {spread(tau)} | "
                     + ", ".join(f"{hits[r]}/{len(seeds)}" for r in hits)
                     + f" | {statistics.mean(regret):.4f} ({max(regret):.4f}) |")
    rho, tau = [], []
    for a, b in itertools.combinations(seeds, 2):
        cfgs = sorted(curves[a])
        fa = [curves[a][c][-1] for c in cfgs]
        fb = [curves[b][c][-1] for c in cfgs]
        rho.append(spearmanr(fa, fb).statistic)
        tau.append(kendalltau(fa, fb).statistic)
    finals = [curves[s][c][-1] for s in seeds for c in curves[s]]
    lines += ["", f"Seed to seed (final vs final, {len(rho)} pairs): Spearman {spread(rho)}, "
              f"Kendall {spread(tau)}.",
              f"Final val_acc over all runs: median {statistics.median(finals):.3f}, "
              f"range {min(finals):.3f} to {max(finals):.3f}; per seed, best minus median: "
              + ", ".join(f"{max(v[-1] for v in curves[s].values()) - statistics.median(v[-1] for v in curves[s].values()):.3f}"
                          for s in seeds) + "."]
    return "\n".join(lines)


def sample_arguments(description: str, configs: int) -> argparse.ArgumentParser:
    """The arguments of a script that trains the sample to the end: how many configurations,
    the seed that draws them, the training seeds, and the processes at a time."""
    ap = argparse.ArgumentParser(description=description.split("\n")[0])
    ap.add_argument("--configs", type=int, default=configs)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workers", type=int, default=2)
    return ap


def main() -> None:
    ap = sample_arguments(__doc__, 32)
    ap.add_argument("--replay", action="store_true", help="analyse the recorded CSVs only")
    ap.add_argument("--budget", type=int, default=72, help="epochs per replayed search")
    ap.add_argument("--schedule", choices=["step", "cosine"], default="step",
                    help="the trials' lr schedule (default: step, the CIFAR spaces')")
    ap.add_argument("--repeats", type=int, default=2000, help="replayed searches per setting")
    ap.add_argument("--summary", action="store_true",
                    help="with --replay: the rung candidates' tables (rank_candidates.csv, "
                    "from rung_candidates.py) and one line on the default")
    args = ap.parse_args()
    if args.summary:
        print(candidates_report(args.budget, args.repeats))
        return
    if not args.replay:
        t, load0 = time.time(), os.getloadavg()[0]
        record(args.configs, args.sample_seed, args.seeds, args.workers, args.schedule)
        print(f"trained in {time.time() - t:.0f} s, load average {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f}", file=sys.stderr)
    curves = load_curves(data_files(args.schedule)[0])
    print(analyse(curves))
    settings = [(None, 0)] + [(g, r) for g in (1, 2, 3, 4, 6) for r in (2, 3, 4)]
    print()
    print(rung_replay.replay_table(curves, args.budget, settings, args.repeats)[0])


def candidates_report(budget: int, repeats: int = 2000) -> str:
    """The rung candidates (`rung_candidates.py`): rank correlation per epoch, the ASHA replay
    with each, and the line on the search's default."""
    curves, methods = rung_replay.load_candidates(DATA / "rank_candidates.csv")
    seeds = sorted(curves)
    out = [f"Rung candidates: {len(curves[seeds[0]])} configurations x training seeds "
           f"{', '.join(map(str, seeds))} (a method: the seeds it was recorded on); Spearman's rho of each candidate's result at an epoch "
           "against the final val_acc (mean ± sd over seeds), with the extra epochs it cost.", "",
           rung_replay.candidates_table(curves, methods), ""]
    # (the table above is computed before the oracle joins: its rho would be 1 at every epoch)
    grid = [(g, r) for g in (1, 2, 3, 4, 6) for r in (2, 3, 4)]
    # The bound on any rung result: a free oracle that knows every configuration's final val_acc.
    methods = {**methods, "oracle": {s: {c: {e: (v[-1], 0.0) for e in range(1, len(v))}
                                         for c, v in curves[s].items()} for s in curves}}
    best_of = {}
    for name in ["plain", *sorted(methods)]:
        m = None if name == "plain" else rung_replay.method(name, methods[name])
        settings = [(None, 0)] + [(g, r) for g, r in grid
                                  if not (m and m.restart) or g == m.restart]
        on = curves if m is None else {s: curves[s] for s in m.table}
        table, res = rung_replay.replay_table(on, budget, settings, repeats, m)
        out += [table, ""]
        best_of[name] = res
    from digits_problem import problem_space

    d = problem_space(0).search  # the search's defaults on this problem
    name = f"tail_{d.branch_epochs:g}" if d.branch_epochs else "plain"
    grace = d.grace_period
    r = best_of[name][(grace, d.reduction_factor)]
    out.append(f"default: {name} (grace {grace}, rf {d.reduction_factor}) reaches FIFO's best "
               f"with {r['median_to_all'] / budget:.2f} of its epochs (median of {repeats} draws)")
    return "\n".join(out)


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
