"""`gunn-search`: run a search from a space file, or export its best trial.

    gunn-search --space smoke.yaml [--num-samples N] [--max-epochs E] [--dry-run] ...
    gunn-search export --experiment NAME [--run-id ID] --out best.yaml

Results go to stdout, status and errors to stderr. A user mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline tool sends no telemetry

from gunn_search.space import (SpaceError, example_configs, load_space, parse_space,
                               space_fingerprint, summarize)

DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
DEFAULT_STORAGE = "gunn-search-runs"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gunn-search",
        description="Search GUNN/SUNN architectures and hyperparameters with Ray Tune "
                    "(Optuna TPE + ASHA), tracked in MLflow. `gunn-search export -h` for export.")
    p.add_argument("--space", required=True, help="space file, or a bundled name (smoke.yaml)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides search.num_samples)")
    p.add_argument("--max-epochs", type=int, help="max epochs per trial (overrides train.epochs)")
    p.add_argument("--data-dir", help="dataset directory (overrides dataset.data_dir)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment name (default: the space's name)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="where Tune keeps trial checkpoints and search state; on a cluster a "
                        "path or URI every node sees (default: ./gunn-search-runs)")
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial (fractions pack trials)")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs per trial")
    p.add_argument("--seed", type=int, help="searcher seed (overrides search.seed)")
    p.add_argument("--max-failures", type=int, default=1,
                   help="retries of a failed trial from its last checkpoint (default 1)")
    p.add_argument("--resume", action="store_true", help="continue the search in --storage")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the space, show it and a few sampled architectures, exit")
    return p


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gunn-search export",
                                description="Write a gunn-train config for a searched trial.")
    p.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    p.add_argument("--run-id", help="trial run to export (default: the best trial)")
    p.add_argument("--out", required=True, help="output YAML path")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--epochs", type=int, default=300, help="epochs of the full training (300)")
    return p


class UsageError(Exception):
    pass


def quiet_libraries() -> None:
    """Keep MLflow's and alembic's INFO notes (store creation, migrations) off the terminal."""
    import logging
    # MLflow sets its loggers' level from this variable when it is imported, overriding a level
    # set before; the loop below covers an MLflow that is already imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def apply_overrides(space, args) -> object:
    """The space with command-line overrides applied, re-validated like the file."""
    data = space.model_dump(mode="json")
    if args.num_samples is not None:
        data["search"]["num_samples"] = args.num_samples
    if args.max_epochs is not None:
        data["train"]["epochs"] = args.max_epochs
        data["search"]["grace_period"] = min(data["search"]["grace_period"], max(1, args.max_epochs))
    if args.data_dir is not None:
        data["dataset"]["data_dir"] = args.data_dir
    if args.gpus_per_trial is not None:
        data["resources"]["gpus_per_trial"] = args.gpus_per_trial
    if args.cpus_per_trial is not None:
        data["resources"]["cpus_per_trial"] = args.cpus_per_trial
    if args.seed is not None:
        data["search"]["seed"] = args.seed
    # Relative data dirs are taken from where the user runs the command, not a worker's cwd.
    data["dataset"]["data_dir"] = str(Path(data["dataset"]["data_dir"]).expanduser().resolve())
    return parse_space(data, "command line")


def check_tracking_uri(uri: str) -> None:
    from urllib.parse import urlparse
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        if not urlparse(uri).hostname:
            raise UsageError(f"--tracking-uri {uri!r}: no host in the URL")
        # Bound how long one call can block on a server that is down (default: minutes).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise UsageError(f"--tracking-uri {uri!r}: expected sqlite:///PATH")
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql"):
        raise UsageError(f"--tracking-uri {uri!r}: unsupported scheme {scheme or '(none)'!r}; "
                         "use http(s)://HOST:PORT, sqlite:///PATH or file:///PATH")


def cmd_search(argv: Sequence[str]) -> int:
    args = search_parser().parse_args(argv)
    space = load_space(args.space)
    space_path = str(Path(space._source).resolve())
    fingerprint = space_fingerprint(space)
    space = apply_overrides(space, args)
    if args.dry_run:
        return dry_run(space)
    if args.max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if space.resources.gpus_per_trial > 0 and not args.address:
        import torch
        if not torch.cuda.is_available():
            raise UsageError(f"--gpus-per-trial {space.resources.gpus_per_trial:g}: this machine "
                             "has no GPU (use --gpus-per-trial 0 to train on the CPU)")
    from gunn_search.search import (SearchOptions, check_address, experiment_path, read_state,
                                    run_search)
    from gunn_search.tracking import is_local_uri

    experiment = args.experiment or space.name
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())
    uri = args.tracking_uri
    if uri is None and args.resume:  # continue logging where the search started
        state = read_state(experiment_path(SearchOptions("", experiment, "", storage)))
        uri = state["tracking_uri"] if state else None
    uri = uri or default_tracking_uri()
    check_tracking_uri(uri)
    if args.address:
        if args.address.startswith("ray://") and is_local_uri(uri):
            raise UsageError(f"--address {args.address}: with Ray Client the search loop runs on "
                             f"the head node, where {uri} is not this machine's store; "
                             "pass --tracking-uri http://... of a tracking server")
        check_address(args.address)
    preflight_data(space)

    opts = SearchOptions(
        space_path=space_path, experiment=experiment, tracking_uri=uri, storage=storage,
        address=args.address, resume=args.resume, max_failures=args.max_failures,
        artifact_root=str(Path(DEFAULT_ARTIFACTS).resolve()) if is_local_uri(uri) else None,
        fingerprint=fingerprint)
    # The outcome is printed as soon as it is known, before Ray shuts down.
    run_search(space, opts, on_outcome=lambda out: print_outcome(out, uri))
    return 0


def preflight_data(space) -> None:
    """Load (and, if allowed, download) the dataset once in the driver before Ray starts: a
    missing dataset is a one-line error now, not N failed trials later. Only CIFAR can be
    missing; the bundled digits and the generated synthetic data are skipped (1-2 s saved)."""
    if space.dataset.name not in ("cifar10", "cifar100"):
        return
    from trainers.loop import load_data
    from gunn_search.trainable import space_data_config

    load_data(space_data_config(space), "cpu")


def print_outcome(out, uri: str) -> None:
    print(f"search: {out.experiment} ({out.num_trials} trials), MLflow parent run {out.parent_run_id}")
    if out.best_trial_id is None:
        print("best trial: none finished")
        return
    print(f"best trial: {out.best_trial_id}  val_acc {out.best_val_acc:.4f}  run {out.best_run_id}")
    if out.best_config:
        keys = ["family"] + sorted(k for k in out.best_config if k.startswith("stage")) + \
               ["lr", "weight_decay", "batch_size", "cost.params", "cost.macs"]
        print("  " + "  ".join(f"{k}={fmt(out.best_config[k])}" for k in keys if k in out.best_config))
    uri_flag = "" if uri == default_tracking_uri() else f" --tracking-uri {uri}"
    print(f"export:  gunn-search export --experiment {out.experiment} --out best.yaml{uri_flag}")
    if uri.startswith("sqlite:"):
        print(f"inspect: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def dry_run(space) -> int:
    print(summarize(space))
    print("\nexample architectures:")
    for cfg in example_configs(space, n=5, seed=space.search.seed):
        stages = " ".join(f"{{{cfg[f'stage{i}.N']},{cfg[f'stage{i}.P']},{cfg[f'stage{i}.K']},"
                          f"{cfg[f'stage{i}.M']}}}" for i in range(1, len(space.model.stages) + 1))
        flag = "" if cfg.get("budget_ok", True) else "  [over budget: would be rejected]"
        print(f"  {cfg['family']} {stages}  lr={cfg['lr']:.3g} wd={cfg['weight_decay']:.3g}  "
              f"params={cfg['cost.params']:,}  MACs={cfg['cost.macs']:,}{flag}")
    return 0


def cmd_export(argv: Sequence[str]) -> int:
    args = export_parser().parse_args(argv)
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {args.epochs})")
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri[len('sqlite:///'):]} (run a search first, "
                         "or pass --tracking-uri)")
    from gunn_search.export import export_run
    out = export_run(uri, args.experiment, args.out, run_id=args.run_id, epochs=args.epochs)
    print(f"wrote {out}")
    print(f"train: gunn-train --config {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    from trainers.config import DataError
    from gunn_search.errors import ExportError, SearchError
    try:
        if argv and argv[0] == "export":
            return cmd_export(argv[1:])
        return cmd_search(argv)
    except (SpaceError, SearchError, ExportError, UsageError, DataError) as e:
        print(f"gunn-search: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gunn-search: interrupted; continue with --resume", file=sys.stderr)
        return 130


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
