"""`gunn-search export`: write a gunn-train config for a searched trial.

    gunn-search export --experiment NAME [--run-id ID] --out best.yaml
"""

from __future__ import annotations

import argparse
from typing import Sequence

from gunn_search.cli.flags import add_tracking_uri


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
    from gunn_search import api

    args = export_parser().parse_args(argv)
    out = api.export(args.experiment, args.out, run_id=args.run_id,
                     tracking_uri=args.tracking_uri, epochs=args.epochs, final=args.final,
                     max_params=args.max_params, max_macs=args.max_macs)
    print(f"wrote {out.path}")
    print(f"train: gunn-train --config {out.path}")
    return 0
