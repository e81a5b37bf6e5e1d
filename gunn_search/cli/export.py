"""`gunn-search export`: write a gunn-train config for a searched trial.

    gunn-search export --experiment NAME [--run-id ID] --out best.yaml
"""

from __future__ import annotations

import argparse
from typing import Sequence

from gunn_search.cli.flags import add_tracking_uri, check_store_exists, tracking_uri
from gunn_search.errors import UsageError


def export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gunn-search export",
                                description="Write a gunn-train config for a searched trial.")
    p.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    p.add_argument("--run-id", help="trial run to export (default: the best trial)")
    p.add_argument("--out", required=True, help="output YAML path")
    add_tracking_uri(p)
    p.add_argument("--epochs", type=int,
                   help="train this many epochs instead of the trial's (the paper: 300)")
    p.add_argument("--max-params", type=int, metavar="N",
                   help="export the most accurate trial with at most N parameters")
    p.add_argument("--max-macs", type=int, metavar="N",
                   help="export the most accurate trial with at most N MACs per image")
    p.add_argument("--final", action="store_true",
                   help="train on train + val and report the test set (data.split: final)")
    return p


def cmd_export(argv: Sequence[str]) -> int:
    args = export_parser().parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {args.epochs})")
    uri = tracking_uri(args.tracking_uri)
    check_store_exists(uri)
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
