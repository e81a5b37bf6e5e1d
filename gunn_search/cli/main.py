"""`gunn-search`: run a search from a space file, or export its best trial.

    gunn-search --space smoke.yaml [--num-samples N] [--max-epochs E] [--dry-run] ...
    gunn-search export --experiment NAME [--run-id ID] --out best.yaml
    gunn-search ablate --experiment NAME [--run-id ID] [--variants gunn,sunn,gunn-nores] [--seeds 3]

Results go to stdout, status and errors to stderr. A user mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline tool sends no telemetry

from trainers.errors import report

from gunn_search.run import interrupts
from gunn_search.errors import USER_ERRORS, UsageError
from gunn_search.space import fingerprint, load_space, with_overrides
from gunn_search.track.uri import check_tracking_uri, default_tracking_uri, quiet_libraries

DEFAULT_ARTIFACTS = "mlartifacts"
DEFAULT_STORAGE = "gunn-search-runs"


def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gunn-search",
        description="Search GUNN/SUNN architectures and hyperparameters with Ray Tune "
                    "(Optuna TPE + ASHA), tracked in MLflow. `gunn-search export -h` for export, "
                    "`gunn-search ablate -h` for the paired GUNN/SUNN/NoRes ablation.")
    p.add_argument("--space", required=True, help="space file, or a bundled name (smoke.yaml)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples)")
    p.add_argument("--max-epochs", type=int, help="max epochs per trial (overrides epochs)")
    p.add_argument("--data-dir", help="dataset directory (overrides data.data_dir)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="where Tune keeps trial checkpoints and search state; on a cluster a "
                        "path or URI every node sees (default: ./gunn-search-runs)")
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
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
    p.add_argument("--resume", action="store_true", help="continue the search in --storage")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the space, show it and a few sampled architectures, exit")
    return p


def gpus_arg(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number (got {text!r})") from None


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gunn-search export",
                                description="Write a gunn-train config for a searched trial.")
    p.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    p.add_argument("--run-id", help="trial run to export (default: the best trial)")
    p.add_argument("--out", required=True, help="output YAML path")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--epochs", type=int,
                   help="train this many epochs instead of the trial's (the paper: 300)")
    p.add_argument("--max-params", type=int, metavar="N",
                   help="export the most accurate trial with at most N parameters")
    p.add_argument("--max-macs", type=int, metavar="N",
                   help="export the most accurate trial with at most N MACs per image")
    p.add_argument("--final", action="store_true",
                   help="train on train + val and report the test set (data.split: final)")
    return p


def apply_overrides(space, args):
    """The space with command-line overrides applied, validated like the file."""
    over = {}
    if args.num_samples is not None:
        over["search.num_samples"] = args.num_samples
    if args.max_epochs is not None:
        over["epochs"] = args.max_epochs
        if "grace_period" in space.data.get("search", {}):  # else it follows the new epochs
            over["search.grace_period"] = min(space.search.grace_period, max(1, args.max_epochs))
    if args.gpus_per_trial is not None:
        over["resources.gpus_per_trial"] = args.gpus_per_trial
    if args.cpus_per_trial is not None:
        over["resources.cpus_per_trial"] = args.cpus_per_trial
    if args.seed is not None:
        over["search.seed"] = args.seed
    # Relative data dirs are taken from where the user runs the command, not a worker's cwd.
    data_dir = args.data_dir if args.data_dir is not None else space.base.data.data_dir
    over["data.data_dir"] = str(Path(data_dir).expanduser().resolve())
    return with_overrides(space, over)


def cmd_search(argv: Sequence[str]) -> int:
    args = search_parser().parse_args(argv)
    interrupts.install("gunn-search")
    space = load_space(args.space)
    space_path = str(Path(space.source).resolve())
    space_id = fingerprint(space)
    space = apply_overrides(space, args)
    if args.dry_run:
        return dry_run(space)
    if args.max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if args.warm_start_top < 0:
        raise UsageError("--warm-start-top must be >= 0")
    if args.warm_start and args.resume:
        raise UsageError("--warm-start starts a new search; a resumed one keeps what its "
                         "sampler already knows")
    gpus = space.resources.gpus_per_trial
    if gpus != "auto" and gpus > 0 and not args.address:
        import torch
        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-trial {gpus:g}: this machine "
                             "has no GPU (use --gpus-per-trial 0 to train on the CPU)")
    from gunn_search.run.search import (SearchOptions, check_cluster, experiment_path, read_state,
                                    run_search)
    from gunn_search.track.store import is_local_uri

    experiment = args.experiment or space.name
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    uri = args.tracking_uri
    if uri is None and args.resume:  # continue logging where the search started
        state = read_state(experiment_path(SearchOptions("", experiment, "", storage)))
        uri = state["tracking_uri"] if state else None
    uri = uri or default_tracking_uri()
    check_tracking_uri(uri)
    if args.address:
        check_cluster(args.address, uri)
    preflight_data(space)

    opts = SearchOptions(
        space_path=space_path, experiment=experiment, tracking_uri=uri, storage=storage,
        address=args.address, resume=args.resume, max_failures=args.max_failures,
        artifact_root=str(Path(DEFAULT_ARTIFACTS).resolve()) if is_local_uri(uri) else None,
        fingerprint=space_id, warm_start=args.warm_start, warm_start_top=args.warm_start_top)
    # The outcome is printed as soon as it is known, before Ray shuts down.
    resume = resume_command(argv)
    try:
        out = run_search(space, opts,
                         on_outcome=lambda out: print_outcome(out, uri, space, resume))
    except KeyboardInterrupt:  # a second signal, or one before Tune ran: stopped at once
        interrupt = interrupts.received()
        name = interrupt.name if interrupt else "SIGINT"
        print(f"search: {experiment} interrupted ({name}, stopped at once)")
        if resumable(opts):
            print(f"resume:  {resume}")
        else:
            print("resume:  nothing to resume (stopped before its first trial)")
        return interrupt.exit_code if interrupt else 130
    return out.interrupted.exit_code if out.interrupted else 0


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this search: the same arguments with `--resume` (a resumed
    search refuses a warm start, which only a new search takes)."""
    out, skip = ["gunn-search"], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in ("--warm-start", "--warm-start-top"):
            skip = "=" not in a
            continue
        out.append(a)
    if "--resume" not in out:
        out.append("--resume")
    return shlex.join(out)


def resumable(opts) -> bool:
    """Whether Tune saved a state that `--resume` can restore."""
    from ray import tune

    from gunn_search.run.search import experiment_path
    return tune.Tuner.can_restore(experiment_path(opts))


def preflight_data(space) -> None:
    """Load (and, if allowed, download) the dataset once in the driver before Ray starts: a
    missing dataset is a one-line error now, not N failed trials later. Only CIFAR can be
    missing; the bundled digits and the generated synthetic data are skipped (1-2 s saved)."""
    if space.base.data.name not in ("cifar10", "cifar100"):
        return
    from trainers.loop import load_data

    load_data(space.base.data, "cpu")


def print_outcome(out, uri: str, space, resume: str) -> None:
    if out.interrupted is not None:
        # Nothing was decided: no best trial and no export, only how to go on.
        i = out.interrupted
        print(f"search: {out.experiment} interrupted by {i.name} at {i.at} "
              f"({out.num_trials} of {space.search.num_samples} trials started; state saved), "
              f"MLflow parent run {out.parent_run_id}")
        print(f"resume:  {resume}")
        return
    print(f"search: {out.experiment} ({out.num_trials} trials), MLflow parent run {out.parent_run_id}")
    if out.best_trial_id is None:
        print("best trial: none finished")
        return
    print(f"best trial: {out.best_trial_id}  val_acc {out.best_val_acc:.4f}  run {out.best_run_id}")
    print(top_table(out.top, space))
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
        from gunn_search.track.ui import runs_link
        print(f"trials:  {runs_link(ui_base, out.experiment_id, out.parent_run_id)}")


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
    from gunn_search.space.summary import examples, summarize

    print(summarize(space))
    print("\nexample samples ({N,P} per stage, the other searched values, the price):")
    print(examples(space))
    return 0


def cmd_export(argv: Sequence[str]) -> int:
    args = export_parser().parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {args.epochs})")
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri[len('sqlite:///'):]} (run a search first, "
                         "or pass --tracking-uri)")
    from gunn_search.results.export import export_run
    for flag, v in (("--max-params", args.max_params), ("--max-macs", args.max_macs)):
        if v is not None and v < 1:
            raise UsageError(f"{flag} must be >= 1 (got {v})")
        if v is not None and args.run_id:
            raise UsageError(f"{flag} chooses a trial; it cannot be given with --run-id")
    out = export_run(uri, args.experiment, args.out, run_id=args.run_id, epochs=args.epochs,
                     final=args.final, max_params=args.max_params, max_macs=args.max_macs)
    print(f"wrote {out}")
    print(f"train: gunn-train --config {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "export":
            return cmd_export(argv[1:])
        if argv and argv[0] == "ablate":
            from gunn_search.cli.ablate import cmd_ablate
            return cmd_ablate(argv[1:])
        return cmd_search(argv)
    except USER_ERRORS as e:
        return report("gunn-search", e)
    except KeyboardInterrupt:  # before a command could say more (one that could has said it)
        interrupt = interrupts.received()
        print("gunn-search: interrupted", file=sys.stderr)
        return interrupt.exit_code if interrupt else 130


def run() -> None:
    """Console-script entry: `main`, then exit without the interpreter's teardown.

    Once main has returned, Ray is shut down and every MLflow write is flushed; what is left
    is the teardown of torch's, Ray's and grpc's C++ state, 2.5 s here after every search
    (measured: no Python frame runs in it). A crash still raises and prints its traceback.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (gunn-search ... | head): nothing to keep
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
