"""Real searches under the compute budget, on the simulator's terms (`search_efficiency.py
--methods default random_fifo optuna_hyperband`): the same method keys, the budget in epochs
(branch epochs included), a target that defaults to the simulated one, and rows with the
simulator's fields, so a real seed sits beside the simulated figure.

- `default`: `gunn-search` on the digits problem (`digits_problem.py`) as `build_tuner` builds it,
  with `search.budget_epochs` = the budget and no `num_samples` (trials start while budget is
  left), 2 trials at a time; `random_fifo`: the same with the random sampler and FIFO;
  `optuna_hyperband`: Optuna on its own (`peer_optuna.py`), stopped at the budget.
- A row: `method`, `search_seed`, `epochs_to_target` (the budget spent when a trial trained to
  the end first reached the target; null when never), `best_final` (the best val_acc among
  trials trained to the end), `budget_epochs`, `spent`, `trials`, `wall`.
- Target by default: the median best of 200 simulated random + FIFO searches (search seeds
  0-199, 2 at a time) at this budget on the step table (`simulate.py`).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path

METHODS = ("default", "random_fifo", "optuna_hyperband")


def budget_space(seed: int, budget: float, **search):
    """The digits problem with a compute budget of `budget` epochs and no trial cap."""
    from digits_problem import problem_data

    from gunn_search.space import parse_space

    data = problem_data(seed)
    data["search"].pop("num_samples", None)
    data["search"].update(seed=seed, max_concurrent=2, budget_epochs=budget, **search)
    return parse_space(data, "digits_problem")


def run_real(method: str, seed: int, budget: float, storage: Path) -> dict:
    """One real search: its per-epoch results in arrival order."""
    if method == "optuna_hyperband":
        from peer_optuna import run_seed

        return run_seed(seed, int(budget))
    from search_efficiency import recorder_cls

    from gunn_search.run.search import SearchOptions, build_tuner

    over = {"sampler": "random", "scheduler": "fifo"} if method == "random_fifo" else {}
    space = budget_space(seed, budget, **over)
    rec = recorder_cls()()
    opts = SearchOptions(space_path="(in memory)", experiment=f"{method}_b{budget:g}_s{seed}",
                         tracking_uri="unused", storage=str(storage))
    tuner = build_tuner(space, opts, callbacks=[rec])
    t = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        grid = tuner.fit()
    errors = [repr(r.error)[:200] for r in grid if r.error is not None]
    return {"events": rec.events, "wall": time.time() - t, "errors": errors}


def row_of(method: str, seed: int, out: dict, budget: float, epochs: int) -> dict:
    """The simulator's row of a real search (`epochs_to_target` is put on by `with_target`)."""
    from gunn_search.run.compute_budget import result_epochs

    spent, events, finals, trained = 0.0, [], [], {}
    for e in out["events"]:
        spent += result_epochs(e, trained.get(e["trial"], e["epoch"] - 1))  # the ledger's rule
        trained[e["trial"]] = e["epoch"]
        final = e["epoch"] >= epochs
        if final:
            finals.append(e["val_acc"])
        events.append([round(spent, 3), e.get("t", 0.0), e["epoch"], e["val_acc"], final])
    return {"method": method, "search_seed": seed, "best_final": max(finals, default=None),
            "budget_epochs": budget, "spent": round(spent, 3),
            "trials": len({e["trial"] for e in out["events"]}), "wall": round(out["wall"], 1),
            "errors": out.get("errors", []), "events": events}


def simulated_target(budget: float, seeds=range(200), table: str | None = None) -> float:
    """The median best of simulated random + FIFO searches at `budget` epochs."""
    import simulate

    from harness import spawn_pool

    folder = table or str(simulate.DEFAULT_TABLE)
    epochs = simulate.table_of(folder).epochs
    jobs = [(folder, "random_fifo", s, budget / epochs, 2) for s in seeds]
    with spawn_pool(2) as pool:
        rows = list(pool.map(simulate.run_one, jobs, chunksize=10))
    return statistics.median(r["best_final"] or 0.0 for r in rows)


def recorded(path, budget: float) -> tuple[float | None, list[dict]]:
    """The target and rows an earlier run at this budget wrote to `path` (none if it is absent
    or at another budget): a run of many real searches resumes where it stopped."""
    import json

    p = Path(path) if path else None
    if p is None or not p.exists():
        return None, []
    data = json.loads(p.read_text())
    if data.get("budget_epochs") != budget:
        return None, []
    return data.get("target"), data.get("rows", [])


def run_searches(methods, seeds, budget: float, target: float, rows: list[dict], json_path,
                 run) -> list[dict]:
    """Every (seed, method) search not yet in `rows`, in seed order, `run(method, seed)` giving
    a row; `rows` (with `epochs_to_target` against `target`) written after each."""
    from simulate import with_target

    from harness import write_json

    done = {(r["method"], r["search_seed"]) for r in rows}
    for seed in seeds:
        for m in methods:
            if (m, seed) in done:
                continue
            row = run(m, seed)
            rows.append(row)
            with_target(rows, target)
            print(f"seed {seed} {m}: best_final {row['best_final']}, epochs to target "
                  f"{row['epochs_to_target']}, {row['trials']} trials, spent {row['spent']:g}"
                  f" ({row['wall']:.0f} s)", file=sys.stderr, flush=True)
            if json_path:
                write_json(json_path, {"target": target, "budget_epochs": budget,
                                       "concurrency": 2, "rows": rows})
    return rows


def seed_table(rows: list[dict], methods) -> list[str]:
    """Per seed that every method has searched: each method's epochs to target (never: not
    reached), best_final and trials, as a Markdown table."""
    from harness import table_head, table_row

    seeds = sorted({r["search_seed"] for r in rows})
    by = {(r["method"], r["search_seed"]): r for r in rows}
    out = [table_head(["seed", *(f"{m}: epochs to target / best_final / trials" for m in methods)])]
    for seed in seeds:
        if not all((m, seed) in by for m in methods):
            continue
        cells = []
        for m in methods:
            r = by[(m, seed)]
            e = r["epochs_to_target"]
            best = "–" if r["best_final"] is None else f"{r['best_final']:.4f}"
            cells.append(f"{'never' if e is None else f'{e:g}'} / {best} / {r['trials']}")
        out.append(table_row([str(seed), *cells]))
    return out


def main(args) -> None:
    """`search_efficiency.py` with the simulator's method keys; with `--json` a file of an
    earlier run at the same budget, the searches it holds are kept and not run again (run
    with every search recorded, it prints the tables only)."""
    import os
    import shutil
    import tempfile

    import ray
    from digits_problem import EPOCHS
    from simulate import summary

    old_target, rows = recorded(args.json, args.budget)
    target = args.target if args.target is not None else old_target
    if target is None:
        target = simulated_target(args.budget)
    if rows:
        print(f"resuming {args.json}: {len(rows)} searches recorded", file=sys.stderr, flush=True)
    print(f"target {target:.4f}", file=sys.stderr, flush=True)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # as gunn-search does
    storage = Path(tempfile.mkdtemp(prefix="gunn-efficiency-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")
    try:
        rows = run_searches(
            args.methods, args.seeds, args.budget, target, rows, args.json,
            lambda m, seed: row_of(m, seed, run_real(m, seed, args.budget, storage), args.budget,
                                   EPOCHS))
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    print("\n".join([*seed_table(rows, list(args.methods)), "",
                     *summary(rows, list(args.methods), args.budget)]))
