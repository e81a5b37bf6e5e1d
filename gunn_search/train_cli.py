"""`gunn-train`: the trainer's command, logging to MLflow when the config or flags say where.

`trainers.cli` stays free of MLflow; this wraps it. A run trained from an exported config is
tagged with the search and trial it came from, logs per-epoch metrics (step = epoch), the final
test accuracy and the best one with its epoch, and the final weights (the checkpoint) as an
artifact.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # an offline tool sends no telemetry

from trainers import cli as base
from trainers.config import TrainConfig

from gunn_search.errors import UsageError
from gunn_search.trial_status import TrialStatus
from gunn_search.tracking_uri import check_tracking_uri, quiet_libraries


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    parser = base.build_parser()
    parser.add_argument("--tracking-uri", help="log the run to this MLflow tracking URI")
    parser.add_argument("--experiment", help="MLflow experiment (default: the config's, or gunn-train)")
    args = parser.parse_args(argv)
    try:
        cfg = base.config_from_args(args)
        uri = args.tracking_uri or (cfg.tracking.uri if cfg.tracking else None)
        if uri is None:
            _, result = base.run(args)
            print(json.dumps(base.summary(cfg, result), indent=2))
            return 0 if result.status in ("completed", "stopped") else 1
        try:
            check_tracking_uri(uri)
        except UsageError as e:
            raise base.UsageError(str(e)) from None
        return run_tracked(args, cfg, uri)
    except base.USER_ERRORS + (base.UsageError,) as e:
        print(f"gunn-train: error: {e}", file=sys.stderr)
        return 2


def run_tracked(args, cfg: TrainConfig, uri: str) -> int:
    from gunn_search import tracking as tr
    from gunn_search.space.budget import config_cost, cost_metrics

    client = tr.BufferedClient(tr.open_store(uri))
    experiment = args.experiment or (cfg.tracking.experiment if cfg.tracking else None) or "gunn-train"
    exp_id = tr.get_or_create_experiment(client.client, experiment, None)
    tags = dict(cfg.tracking.tags) if cfg.tracking else {}
    tags[tr.ROLE_TAG] = "train"
    run = client.client.create_run(exp_id, run_name=f"train-{cfg.model.name or 'searched'}",
                                   tags=tags)
    run_id = run.info.run_id
    # The same param names and values as the search trial this config came from.
    tr.batch(client, run_id, params=tr.config_params(cfg), metrics=cost_metrics(config_cost(cfg)))
    print(f"gunn-train: MLflow run {run_id} in experiment {experiment!r} at {uri}",
          file=sys.stderr, flush=True)

    def on_epoch(metrics: dict, ckpt) -> bool:
        keys = [k for k in metrics if isinstance(metrics[k], (int, float)) and k != "epoch"]
        tr.batch(client, run_id, metrics=tr.finite_metrics(metrics, keys),
                 step=int(metrics["epoch"]))
        return False

    try:
        _, result = base.run(args, on_epoch=on_epoch)
    except BaseException as e:
        tr.batch(client, run_id, tags={tr.STATUS_TAG: TrialStatus.ERRORED,
                                       "gunn_search.error": tr.first_line(str(e) or type(e).__name__)})
        client.call("set_terminated", run_id, "FAILED")
        raise
    final = result.final
    finals = {f"final_{k}": v for k, v in final.items() if k.endswith(("_acc", "_loss"))}
    finals.update(result.best)  # best_<eval>_acc and its epoch: what the paper reports
    tr.batch(client, run_id, metrics=tr.finite_metrics(finals, list(finals)),
             step=result.epochs_completed, tags={tr.STATUS_TAG: result.status})
    if result.checkpoint:
        client.call("log_artifact", run_id, str(result.checkpoint), "final")
    client.call("set_terminated", run_id, "FINISHED" if result.status != "non-finite loss" else "FAILED")
    client.flush()
    summary = base.summary(cfg, result)
    summary["mlflow_run_id"] = run_id
    print(json.dumps(summary, indent=2))
    return 0 if result.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
