"""The peer a user would pick instead: Optuna on its own, TPE + HyperbandPruner (Optuna's
recommended pair), on the problem and epoch budget of `search_efficiency.py`.

What it measures
    Per seed, one Optuna study (TPESampler(seed), HyperbandPruner(min_resource=1, max_resource=12,
    reduction_factor=3), both as Optuna's docs pair them) samples the same space as gunn-search
    (`gunn_search.space.sample`, the define-by-run function its searcher uses) and trains each
    trial with the same loop and training seed (`trainers.loop.train`, one thread), reporting
    val_acc after every epoch; the pruner stops a trial between epochs. Two trials at a time
    (`n_jobs=2`, threads), as the searches run two trials at a time. The study stops once the
    budget of epochs has been trained. Its per-epoch results, in the order they arrived, are
    written as a `search_efficiency.py --json` row under the method `optuna_hyperband`, so
    `search_efficiency.py --tables-from` puts it beside the other searches (same seeds, target
    = random+FIFO's best of that seed).

Usage
    python benchmarks/peer_optuna.py --seeds 0 1 2 3 4 5 6 7 --budget 72 --json peer.json

Machine and result: benchmarks/RESULTS.md, "The chosen default against every peer" and "Real
searches under the budget" (the older unbudgeted runs: HISTORY.md, "Search efficiency").
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_seed(seed: int, budget: int) -> dict:
    import optuna
    from digits_problem import EPOCHS, run_config
    from search_efficiency import EpochLog, peer_problem

    from gunn_search.space.sample import sample
    from trainers.loop import train

    space, data = peer_problem(seed)
    log = EpochLog(budget)

    def objective(trial: optuna.Trial) -> float:
        values = sample(trial, space)
        cfg = run_config(space, values)
        pruned = []

        def on_epoch(m: dict, _ckpt) -> bool:
            if not log.add(trial.number, m):
                study.stop()
                return True
            trial.report(m["val_acc"], m["epoch"])
            if m["epoch"] < EPOCHS and trial.should_prune():
                pruned.append(m["epoch"])
                return True
            return False

        res = train(cfg, data=data, log=lambda msg: None, on_epoch=on_epoch)
        if pruned:
            raise optuna.TrialPruned()
        return res.final.get("val_acc", 0.0)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Named: HyperbandPruner draws a trial's bracket from a hash of the study's name (Optuna's
    # default name is a fresh uuid), so a seeded search gives its trials the same brackets.
    study = optuna.create_study(
        direction="maximize", study_name=f"peer-hyperband-{seed}",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS,
                                              reduction_factor=3))
    study.optimize(objective, n_trials=10_000, n_jobs=2)
    return {"events": log.events, "wall": time.time() - log.t0, "num_samples": len(study.trials),
            "errors": []}


def main() -> None:
    from search_efficiency import run_peer

    run_peer(__doc__, "optuna_hyperband", run_seed, lambda s: f"{s['trials']} trials")


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
