"""`gunn-search ablate`: the command's flags, their checks (one-line errors before Ray or MLflow
is imported) and what it prints; the ablation itself is `gunn_search.ablation.run`.

    gunn-search ablate --experiment smoke --variants gunn,sunn,gunn-nores --seeds 3
"""

from __future__ import annotations

import argparse
import shlex
from typing import Sequence

from gunn_search.ablation.report import to_markdown
from gunn_search.ablation.run import log, run_ablation
from gunn_search.ablation.variants import DEFAULT_VARIANTS, VARIANTS
from gunn_search.api import DEFAULT_STORAGE
from gunn_search.cli.flags import add_address, add_tracking_uri
from gunn_search.run import interrupts


def ablate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gunn-search ablate",
        description="Train a searched trial's config as GUNN, SUNN and GUNN-NoRes with the same "
                    "seeds (same initial weights and data order per seed) and report the paired "
                    "differences, as the paper's Table 5.")
    p.add_argument("--experiment", required=True, help="MLflow experiment of the search")
    p.add_argument("--run-id", help="trial run whose config to ablate (default: the best trial)")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default: {DEFAULT_VARIANTS})")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per variant, >= 2: the trial's seed and the ones after it "
                        "(default 3)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the trial's)")
    p.add_argument("--final", action="store_true",
                   help="train on train + val and report the test error (data.split: final)")
    p.add_argument("--data-dir", help="dataset directory (default: the trial's)")
    p.add_argument("--gpus-per-trial", metavar="G|auto", default="auto",
                   help="GPUs per run: a number, or auto (one per run where there are GPUs)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per run (default 1)")
    p.add_argument("--max-failures", type=int, default=1,
                   help="retries of a failed run from its last checkpoint (default 1)")
    add_tracking_uri(p)
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="where Tune keeps the runs' checkpoints (default: ./gunn-search-runs; "
                        "on a cluster of several nodes, a URI every node reaches)")
    add_address(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the newest interrupted ablation of this trial, variants and "
                        "seeds")
    return p


def cmd_ablate(argv: Sequence[str]) -> int:
    from gunn_search import api

    args = ablate_parser().parse_args(argv)
    interrupts.install("gunn-search ablate")
    opts = api.plan_ablation(
        args.experiment, variants=args.variants, seeds=args.seeds, run_id=args.run_id,
        epochs=args.epochs, final=args.final, data_dir=args.data_dir,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        max_failures=args.max_failures, tracking_uri=args.tracking_uri, storage=args.storage,
        address=args.address, resume=args.resume)
    variants = opts.variants
    resume = shlex.join(["gunn-search", "ablate", *[a for a in argv if a != "--resume"],
                         "--resume"])
    try:
        result = run_ablation(opts)
    except KeyboardInterrupt:  # a second signal, or one before Tune ran: stopped at once
        i = interrupts.received()
        print(f"ablation: interrupted ({i.name if i else 'SIGINT'}, stopped at once)")
        print(f"resume:  {resume}")
        return i.exit_code if i else 130
    if result.interrupted is not None:  # nothing summarised: only how to go on
        i = result.interrupted
        done = sum(st == "completed" for v in result.statuses.values() for st in v.values())
        print(f"ablation: interrupted by {i.name} at {i.at} ({done} of "
              f"{len(variants) * len(result.seeds)} runs completed), MLflow run "
              f"{result.parent_run_id}")
        print(f"resume:  {resume}")
        return i.exit_code
    print(to_markdown(result))
    print(f"\nMLflow: ablation run {result.parent_run_id} in experiment {opts.experiment} "
          "(ablation.md, ablation.json; one nested run per variant and seed)")
    failed = result.failed()
    if failed:
        log(f"{len(failed)} of {len(variants) * len(result.seeds)} runs gave no result; the "
            "statistics leave them out")
        return 1
    return 0
