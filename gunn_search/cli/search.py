"""`gunn-search --space ...`: run a search from a space file (or show it, `--dry-run`).

    gunn-search --space smoke.yaml [--num-samples N] [--max-epochs E] [--dry-run] ...

The space is read and validated once (`gunn_search.space.load_space`); the flags change it as
typed settings (`space.with_settings`), and the search, its trials and its tracking get that
validated space. Results go to stdout, status and errors to stderr.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Sequence

from gunn_search.api import DEFAULT_STORAGE
from gunn_search.cli.flags import add_address, add_tracking_uri, gpus_arg
from gunn_search.run import interrupts
from gunn_search.track.uri import default_tracking_uri


def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gunn-search",
        description="Search GUNN/SUNN architectures and hyperparameters with Ray Tune "
                    "(Optuna TPE + ASHA), tracked in MLflow. `gunn-search export -h` for export, "
                    "`gunn-search ablate -h` for the paired GUNN/SUNN/NoRes ablation.")
    p.add_argument("--space", required=True, help="space file, or a bundled name (smoke.yaml)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples; "
                   "with a budget, the most trials)")
    p.add_argument("--budget-epochs", type=float, metavar="N",
                   help="stop once all trials together trained N epochs, annealing branches "
                   "included (search.budget_epochs)")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="stop after this much wall time: 90m, 2h, 1.5d (search.time_budget)")
    p.add_argument("--budget-gpu-hours", type=float, metavar="H",
                   help="stop once the trials held H GPU-hours (search.budget_gpu_hours)")
    p.add_argument("--max-epochs", type=int, help="max epochs per trial (overrides epochs)")
    p.add_argument("--data-dir", help="dataset directory (overrides data.data_dir)")
    add_tracking_uri(p)
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="where Tune keeps trial checkpoints and search state; on a cluster a "
                        "path or URI every node sees (default: ./gunn-search-runs)")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="the Optuna study's storage, an SQLAlchemy URL (postgresql://..., "
                        "mysql://...; default: optuna.db beside a SQLite MLflow store, else in "
                        "--storage); optuna-dashboard opens it")
    add_address(p)
    p.add_argument("--gpus-per-trial", type=gpus_arg, metavar="G|auto",
                   help="GPUs per trial: a number (fractions pack trials on a GPU) or auto "
                        "(the default: the cluster's GPUs shared by max_concurrent trials, "
                        "none on a CPU-only machine)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    p.add_argument("--seed", type=int, help="the searcher's seed (overrides search.seed; the "
                                            "trials' training seed is the space's `seed`)")
    p.add_argument("--max-failures", type=int, default=1,
                   help="retries of a failed trial from its last checkpoint (default 1)")
    p.add_argument("--warm-start", metavar="EXPERIMENT",
                   help="tell the sampler the finished trials of an earlier experiment that lie "
                        "in this space, and run its best ones first")
    p.add_argument("--warm-start-top", type=int, default=3, metavar="K",
                   help="how many of the earlier best run first (default 3)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="SEARCH",
                   help="continue the latest search of the experiment that did not finish, or "
                   "the one named (smoke-2); without it, the same command starts a new search")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the space, show it and a few sampled architectures, exit")
    return p


def space_settings(args) -> dict:
    """The flags that change the space (`api.load_searched_space`'s keywords)."""
    return dict(num_samples=args.num_samples, max_epochs=args.max_epochs, data_dir=args.data_dir,
                seed=args.seed, gpus_per_trial=args.gpus_per_trial,
                cpus_per_trial=args.cpus_per_trial, budget_epochs=args.budget_epochs,
                time_budget=args.time_budget, budget_gpu_hours=args.budget_gpu_hours)


def cmd_search(argv: Sequence[str]) -> int:
    from gunn_search import api

    args = search_parser().parse_args(argv)
    interrupts.install("gunn-search")
    settings = space_settings(args)
    if args.dry_run:
        return dry_run(api.load_searched_space(args.space, **settings)[0])
    plan = api.plan_search(
        args.space, experiment=args.experiment, tracking_uri=args.tracking_uri,
        storage=args.storage, optuna_storage=args.optuna_storage, address=args.address,
        max_failures=args.max_failures, warm_start=args.warm_start,
        warm_start_top=args.warm_start_top, resume=args.resume, **settings)
    opts = plan.options
    space, uri, experiment = plan.space, opts.tracking_uri, opts.experiment
    # The outcome is printed as soon as it is known, before Ray shuts down.
    resume = resume_command(argv, opts.search)
    try:
        out = api.run_plan(plan, on_outcome=lambda out: print_outcome(out, uri, space, resume))
    except KeyboardInterrupt:  # a second signal, or one before Tune ran: stopped at once
        interrupt = interrupts.received()
        name = interrupt.name if interrupt else "SIGINT"
        print(f"search: {experiment} interrupted ({name}, stopped at once)")
        if resumable(opts):
            print(f"resume:  {resume}")
        else:
            print("resume:  nothing to resume (stopped before its first trial)")
        return interrupt.exit_code if interrupt else 130
    return interrupts.received().exit_code if out.interrupted else 0


def resume_command(argv: Sequence[str], search: str | None = None) -> str:
    """The command that continues this search: the same arguments with `--resume` (a resumed
    search refuses a warm start, which only a new search takes)."""
    out, skip = ["gunn-search"], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--warm-start", "--warm-start-top"):
            skip = "=" not in a
            continue
        if name == "--resume":  # said again below, naming the search
            skip = "=" not in a and i + 1 < len(argv) and not argv[i + 1].startswith("-")
            continue
        if out[-1] == "--optuna-storage":  # a storage's password is never printed
            a = _shown(a)
        elif name == "--optuna-storage" and "=" in a:
            a = f"{name}={_shown(a.split('=', 1)[1])}"
        out.append(a)
    return shlex.join([*out, "--resume", search] if search else [*out, "--resume"])


def _shown(url: str) -> str:
    from gunn_search.run.study import shown  # SQLAlchemy: only for a search given the flag

    return shown(url)


def resumable(opts) -> bool:
    """Whether Tune saved a state that `--resume` can restore."""
    from ray import tune

    from gunn_search.run.search import experiment_path
    return tune.Tuner.can_restore(experiment_path(opts))


def print_outcome(out, uri: str, space, resume: str) -> None:
    if out.interrupted is not None:
        # Nothing was decided: no best trial and no export, only how to go on.
        i = out.interrupted
        print(f"search: {searched(out)} interrupted by {i.name} at {i.at} "
              f"({started(out, space)}; state saved), "
              f"MLflow parent run {out.parent_run_id}")
        print(f"resume:  {resume}")
        return
    print(f"search: {searched(out)} ({out.num_trials} trials), MLflow parent run {out.parent_run_id}")
    if out.budget:
        print(f"budget:  {out.budget}")
    if out.best_trial_id is None:
        print("best trial: none finished")
        return
    print(f"best trial: {out.best_trial_id}  val_acc {out.best_val_acc:.4f}  run {out.best_run_id}")
    print(top_table(out.top, space))
    if out.importances:
        print(out.importances)
    if out.front is not None:
        from gunn_search.results.pareto import table
        print(f"Pareto front ({len(out.front)} trials; finished trials only):")
        print(table(out.front, out.objectives))
    uri_flag = "" if uri == default_tracking_uri() else f" --tracking-uri {uri}"
    print(f"export:  gunn-search export --experiment {out.experiment} --out best.yaml{uri_flag}")
    if uri.startswith("sqlite:"):
        print(f"inspect: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    ui_base = ("http://127.0.0.1:5000" if uri.startswith("sqlite:")
               else uri if uri.startswith(("http://", "https://")) else None)
    if ui_base and out.experiment_id is not None:
        from gunn_search.track.ui import run_link, runs_link
        print(f"trials:  {runs_link(ui_base, out.experiment_id, out.parent_run_id)}")
        if out.best_run_id is not None:
            print(f"best:    {run_link(ui_base, out.experiment_id, out.best_run_id)}")
    if out.optuna_storage:
        print(f"study:   optuna-dashboard {out.optuna_storage} --host 127.0.0.1 --port 8080")


def searched(out) -> str:
    """"smoke", or "smoke-2 (experiment smoke)" for a later search of it."""
    if out.search and out.search != out.experiment:
        return f"{out.search} (experiment {out.experiment})"
    return out.experiment


def started(out, space) -> str:
    """"5 of 32 trials started", or under a budget "5 trials started, spent 40/120 epochs"."""
    if out.budget:
        return f"{out.num_trials} trials started, {out.budget.split(' on ')[0]}"
    return f"{out.num_trials} of {space.search.num_samples} trials started"


def top_table(top: list[dict], space) -> str:
    """The best trials as a small table: shapes of the stages (N/P), then the other searched
    values in the space's order."""
    n_stages = len(space.stage_forms)
    others = [p for p in space.searched() if not p.startswith("model.stages.")
              or p.rsplit(".", 1)[-1] in ("K", "M")]
    header = ["trial", "status", "val_acc", "epochs"] + (["N/P per stage"] if n_stages else [])
    header += [p.removeprefix("model.") for p in others]
    rows = []
    for t in top:
        c = t["config"]
        row = [t["trial_id"], str(t["status"]), f"{t['val_acc']:.4f}", str(t["epochs"])]
        if n_stages:
            row.append(" ".join(f"{c.get(f'model.stages.{i}.N', '?')}/{c.get(f'model.stages.{i}.P', '?')}"
                                for i in range(n_stages)))
        row += [fmt(c.get(p, "")) for p in others]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "top trials:\n" + "\n".join("  " + ln for ln in lines)


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def dry_run(space) -> int:
    from gunn_search.run.summary import examples, summarize

    print(summarize(space))
    print("\nexample samples ({N,P} per stage, the other searched values, the price):")
    print(examples(space))
    return 0
