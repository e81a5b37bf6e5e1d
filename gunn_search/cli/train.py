"""`gunn-train`: the trainer's command, logging to MLflow when the config or flags say where.

`trainers.cli` stays free of MLflow; this wraps it. A run trained from an exported config is
tagged with the search and trial it came from, logs per-epoch metrics (step = epoch), the final
test accuracy and the best one with its epoch, and the final weights (the checkpoint) as an
artifact.

Ctrl-C or SIGTERM (gunn_search.run.interrupts) stops training at once: the last epoch's checkpoint
stays (written to a temporary name and renamed), stdout gets the JSON summary with status
`interrupted` and the `--resume` command, the MLflow run is KILLED and tagged `interrupted`
with the signal and its time, and the exit code is 130 or 143. `--resume` continues that same
MLflow run (its id is kept beside the checkpoint, `mlflow_run.json`). A full disk is one line
on stderr naming where, the checkpoint it kept and the `--resume` command; exit 1.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline tool sends no telemetry

from trainers import cli as base
from trainers.config import TrainConfig
from trainers.errors import DiskFullError, TrainerError, report
from trainers.loop import STATUS_COMPLETED, STATUS_NONFINITE, STATUS_STOPPED

from gunn_search.run import interrupts
from gunn_search.status import Kind, TrialStatus
from gunn_search.tags import (ERROR_TAG, INTERRUPTED_AT_TAG, INTERRUPTED_BY_TAG, ROLE_TAG,
                              STATUS_TAG)
from gunn_search.track.uri import check_tracking_uri, quiet_libraries


RUN_FILE = "mlflow_run.json"  # beside the checkpoint: the MLflow run a --resume continues
# How the trainer says a run ended, as the status every run of a search is tagged with.
TRAINER_STATUS = {STATUS_COMPLETED: TrialStatus.COMPLETED, STATUS_STOPPED: TrialStatus.STOPPED,
                  STATUS_NONFINITE: TrialStatus.NONFINITE}


def exit_code(result) -> int:
    """0 for a run that trained (to its end, or stopped by its callback), 1 for one that did not."""
    return 0 if TRAINER_STATUS[result.status].kind in (Kind.COMPLETED, Kind.STOPPED) else 1


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    parser = base.build_parser()
    parser.add_argument("--tracking-uri", help="log the run to this MLflow tracking URI")
    parser.add_argument("--experiment", help="MLflow experiment (default: the config's, or gunn-train)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    interrupts.install("gunn-train")
    try:
        cfg = base.config_from_args(args)
        uri = args.tracking_uri or (cfg.tracking.uri if cfg.tracking else None)
        if uri is None:
            done = Progress()
            try:
                _, result = base.run(args, on_epoch=done.on_epoch)
            except KeyboardInterrupt:
                return interrupted(cfg, argv, done)
            except DiskFullError as e:
                return disk_full(cfg, argv, e)
            print(json.dumps(base.summary(cfg, result), indent=2))
            return exit_code(result)
        check_tracking_uri(uri)
        return run_tracked(args, cfg, uri, argv)
    except TrainerError as e:
        return report("gunn-train", e)


class Progress:
    """The last epoch whose checkpoint was written (what an interrupted run resumes from)."""

    def __init__(self):
        self.epoch, self.checkpoint = 0, None

    def on_epoch(self, metrics: dict, ckpt) -> bool:
        self.epoch, self.checkpoint = int(metrics["epoch"]), ckpt
        return False


def resume_command(argv: Sequence[str]) -> str:
    """The same command with a bare `--resume` (OUT_DIR/checkpoint.pt, where every epoch's
    checkpoint is written) in place of any `--resume [CHECKPOINT]` it had."""
    out, i = ["gunn-train"], 0
    while i < len(argv):
        a = argv[i]
        if a == "--resume":
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1  # its CHECKPOINT
        elif not a.startswith("--resume="):
            out.append(a)
        i += 1
    return shlex.join([*out, "--resume"])


def interrupted(cfg: TrainConfig, argv: Sequence[str], done: Progress,
                run_id: str | None = None) -> int:
    """Stopped by a signal: the summary on stdout says so and how to go on; 130 or 143."""
    i = interrupts.received()
    checkpoint = Path(cfg.out_dir) / base.CHECKPOINT_NAME if cfg.out_dir else None
    resumable = checkpoint is not None and checkpoint.is_file()
    epoch = done.epoch
    if resumable and not epoch:  # none finished since it resumed: the checkpoint's own epoch
        from trainers.checkpoint import load_checkpoint
        epoch = load_checkpoint(checkpoint)["epoch"]
    summary = {"status": "interrupted", "signal": i.name if i else "SIGINT",
               "interrupted_at": i.at if i else None,
               "epochs": epoch,  # what the checkpoint holds
               "checkpoint": str(checkpoint) if resumable else None,
               "resume": resume_command(argv) if resumable else None,
               "message": "interrupted; continue with the resume command" if resumable else
               "interrupted before the first checkpoint; start again"}
    if run_id is not None:
        summary["mlflow_run_id"] = run_id
    print(json.dumps(summary, indent=2))
    return i.exit_code if i else 130


def disk_full(cfg: TrainConfig, argv: Sequence[str], e: DiskFullError) -> int:
    """A write found the disk full: one line saying where, what is kept and how to go on."""
    checkpoint = Path(cfg.out_dir) / base.CHECKPOINT_NAME if cfg.out_dir else None
    if checkpoint is not None and checkpoint.is_file():
        from trainers.checkpoint import load_checkpoint
        epoch = load_checkpoint(checkpoint)["epoch"]
        then = (f"; the checkpoint of epoch {epoch} is kept: free space, then "
                f"{resume_command(argv)}")
    else:
        then = "; free space and start again"
    return report("gunn-train", e, then)


def run_tracked(args, cfg: TrainConfig, uri: str, argv: Sequence[str] = ()) -> int:
    from gunn_search.track import store as tr
    from gunn_search.space.budget import config_cost, cost_metrics

    client = tr.BufferedClient(tr.open_store(uri))
    experiment = args.experiment or (cfg.tracking.experiment if cfg.tracking else None) or "gunn-train"
    exp_id = tr.get_or_create_experiment(client.client, experiment, None)
    run_id = resumed_run(client.client, cfg, args, exp_id)
    if run_id is None:
        tags = dict(cfg.tracking.tags) if cfg.tracking else {}
        tags[ROLE_TAG] = "train"
        run = client.client.create_run(exp_id, run_name=f"train-{cfg.model.name or 'searched'}",
                                       tags=tags)
        run_id = run.info.run_id
        # The same param names and values as the search trial this config came from.
        tr.batch(client, run_id, params=tr.config_params(cfg),
                 metrics=cost_metrics(config_cost(cfg)))
        if cfg.out_dir:
            Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
            (Path(cfg.out_dir) / RUN_FILE).write_text(json.dumps(
                {"tracking_uri": uri, "experiment_id": exp_id, "run_id": run_id}))
    else:  # a run that did not finish, continued from its checkpoint
        client.call("update_run", run_id, status="RUNNING")
        tr.batch(client, run_id, tags={STATUS_TAG: TrialStatus.RUNNING})
        log_missing_epochs(client, run_id, Path(cfg.out_dir) / base.CHECKPOINT_NAME)
    print(f"gunn-train: MLflow run {run_id} in experiment {experiment!r} at {uri}",
          file=sys.stderr, flush=True)
    done = Progress()

    def on_epoch(metrics: dict, ckpt) -> bool:
        done.on_epoch(metrics, ckpt)
        keys = [k for k in metrics if isinstance(metrics[k], (int, float)) and k != "epoch"]
        tr.batch(client, run_id, metrics=tr.finite_metrics(metrics, keys),
                 step=int(metrics["epoch"]))
        return False

    try:
        _, result = base.run(args, on_epoch=on_epoch)
    except DiskFullError as e:
        tr.batch(client, run_id, tags={STATUS_TAG: TrialStatus.ERRORED, ERROR_TAG: str(e)})
        client.call("set_terminated", run_id, "FAILED")
        client.flush()
        return disk_full(cfg, argv, e)
    except KeyboardInterrupt:
        i = interrupts.received()
        tags = {STATUS_TAG: TrialStatus.INTERRUPTED}
        if i is not None:
            tags.update({INTERRUPTED_AT_TAG: i.at, INTERRUPTED_BY_TAG: i.name})
        tr.batch(client, run_id, tags=tags)
        client.call("set_terminated", run_id, "KILLED")
        client.flush()
        return interrupted(cfg, argv, done, run_id)
    except BaseException as e:
        tr.batch(client, run_id, tags={STATUS_TAG: TrialStatus.ERRORED,
                                       ERROR_TAG: tr.shown_line(str(e) or type(e).__name__)})
        client.call("set_terminated", run_id, "FAILED")
        raise
    status = TRAINER_STATUS[result.status]
    final = result.final
    finals = {f"final_{k}": v for k, v in final.items() if k.endswith(("_acc", "_loss"))}
    finals.update(result.best)  # best_<eval>_acc and its epoch: what the paper reports
    tr.batch(client, run_id, metrics=tr.finite_metrics(finals, list(finals)),
             step=result.epochs_completed, tags={STATUS_TAG: status})
    if result.checkpoint:
        client.call("log_artifact", run_id, str(result.checkpoint), "final")
    client.call("set_terminated", run_id, "FAILED" if status.kind is Kind.FAILED else "FINISHED")
    if cfg.out_dir:  # ended: a later --resume of this checkpoint is a new run
        (Path(cfg.out_dir) / RUN_FILE).unlink(missing_ok=True)
    client.flush()
    summary = base.summary(cfg, result)
    summary["mlflow_run_id"] = run_id
    print(json.dumps(summary, indent=2))
    return exit_code(result)


def log_missing_epochs(client, run_id: str, checkpoint: Path) -> None:
    """Log the epochs the checkpoint holds that the run lacks: their writes can have been lost
    (a store on a disk that filled up, a process stopped with writes still queued)."""
    from gunn_search.track import store as tr
    from trainers.checkpoint import load_checkpoint

    logged = {m.step for m in client.client.get_metric_history(run_id, "train_loss")}
    for metrics in load_checkpoint(checkpoint).get("history", []):
        if int(metrics["epoch"]) not in logged:
            keys = [k for k in metrics if isinstance(metrics[k], (int, float)) and k != "epoch"]
            tr.batch(client, run_id, metrics=tr.finite_metrics(metrics, keys),
                     step=int(metrics["epoch"]))


def resumed_run(client, cfg: TrainConfig, args, exp_id: str) -> str | None:
    """With `--resume` of OUT_DIR's checkpoint: the MLflow run it was training in, if that run
    did not finish (interrupted, a full disk, an error) in this store's experiment; otherwise
    None (a new run)."""
    if args.resume != "" or not cfg.out_dir:
        return None
    try:
        saved = json.loads((Path(cfg.out_dir) / RUN_FILE).read_text())
        run = client.get_run(saved["run_id"])
    except Exception:  # no file, another store, a deleted run: start a new one
        return None
    # RUNNING too: a full disk can leave the store unwritable when the run ends.
    if run.info.experiment_id != exp_id or run.info.status == "FINISHED":
        return None
    return saved["run_id"]


if __name__ == "__main__":
    sys.exit(main())
