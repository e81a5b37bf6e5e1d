"""`gunn-search importances`: a search's parameter importances, recomputed from MLflow.

    gunn-search importances --experiment NAME [--search SEARCH] [--tracking-uri URI]

The same numbers as the search's own figure and its parent run's `importance.*` metrics (from
the trials of one fidelity: `gunn_search.results.importances`), on stdout, most important first.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from gunn_search.cli.flags import add_tracking_uri


def importances_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gunn-search importances",
                                description="A search's parameter importances (fANOVA), "
                                            "recomputed from its trials in MLflow.")
    p.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    p.add_argument("--search", help="which search of the experiment (smoke-2; default: the "
                                    "newest)")
    add_tracking_uri(p)
    return p


def cmd_importances(argv: Sequence[str]) -> int:
    from gunn_search import api

    args = importances_parser().parse_args(argv)
    out = api.importances(args.experiment, search=args.search, tracking_uri=args.tracking_uri)
    print(f"search {out.search!r} of experiment {args.experiment!r}: "
          f"{out.label if out.label else out.why_not}")
    width = max((len(k) for k in out.values), default=0)
    for name, v in out.values.items():
        print(f"  {name:<{width}}  {v:.4f}")
    return 0
