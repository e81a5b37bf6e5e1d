"""A model-based multi-fidelity peer: DEHB (differential evolution + Hyperband, automl's `dehb`
package), on the problem and epoch budget of `search_efficiency.py`.

What it measures
    Per seed, one DEHB (seed = the seed, eta=3, min_fidelity 1 epoch, max_fidelity the
    problem's 12 epochs: rungs of 12/9 (rounded to 1), 4 and 12 epochs) samples the same space
    as gunn-search: its ConfigSpace is built from the space's dimensions (`config_space`: a
    choice is categorical, an integer range an integer, a float range a float, log ones log,
    stepped ones ordinal over their grid), and a DEHB configuration is turned into the trial
    config exactly as the other searches do (`gunn_search.space.trial_config`; an n-form
    stage's N = n * P, as `gunn_search.space.sample` computes it). Each evaluation trains with
    the same loop and training seed (`trainers.loop.train`, one thread) and reports val_acc
    after every epoch.

    Fidelity: an evaluation at fidelity f trains the config with its FULL 12-epoch schedule (the
    step schedule's lr / 10 from epoch 6, / 100 from 9) and stops after f epochs, as ASHA and
    Hyperband stop a trial between epochs; a config trained on a schedule shortened to f epochs
    would not be the config a user exports. DEHB does not continue checkpoints: every
    evaluation, a promoted one too, trains from scratch, so it costs its f epochs; its fitness
    is 1 - val_acc after its last epoch (what DEHB minimises), its cost f.

    Two evaluations at a time (threads, DEHB's ask/tell interface driven here: ask whenever a
    slot is free, tell as each evaluation ends), as the searches run two trials at a time;
    DEHB's own `run` would need a Dask cluster of processes for that. The search stops once
    the budget of epochs has been trained (an evaluation running then is cut at that epoch
    and not told). Asking while an evaluation runs is how DEHB runs in parallel (its Dask
    workers do the same); one effect seen: a config can be promoted to 12 epochs twice, by two
    brackets, when the first of those evaluations has not been told yet, and trains twice.
    Every per-epoch result, in the order they arrived, is written as a
    `search_efficiency.py --json` row under the method `dehb` (each evaluation is one "trial"),
    so `search_efficiency.py --tables-from` puts it beside the other searches (same seeds,
    target = random+FIFO's best of that seed). As for the others, any result's val_acc counts
    towards the best, a low-fidelity one's too.

    DEHB's files (log, history) go to a temporary folder that is deleted; its loguru logging is
    off, so nothing but this script's lines is printed.

Usage
    pip install -e '.[bench]'     # dehb; see pyproject.toml's comment on its numpy pin
    python benchmarks/peer_dehb.py --seeds 0 1 2 3 4 5 6 7 --budget 72 --json dehb.json

Machine and result: benchmarks/RESULTS.md, "The chosen default against every peer" and "Real
searches under the budget" (the older unbudgeted runs: HISTORY.md, "Search efficiency").
"""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def flat_space(space, who: str = "peer_dehb"):
    """The searched dimensions of `space` as a flat list, and the function turning a
    configuration of them back into the space's values (`decode`): what a peer's own config
    space is built from (`config_space` here, `sim_peers.synetune_space`).

    Each entry is (path, kind, spec): "choice" with its labels (str of each value: a flat
    space keeps labels, the space its types), "ordinal" with a stepped range's grid as labels
    (repr of each value, in order), "int" or "float" with (low, high, log). `decode` turns a
    configuration (a label for a choice or ordinal, a number for the others) into the space's
    values of the searched dimensions, under their paths, as a sampler suggests them.

    ValueError for what a flat space does not express here: N-form stages (P's allowed values
    depend on N), a budget (points over it cannot be rejected), a distribution kind not mapped
    below; `who` names the peer in the message."""
    from gunn_search.space import distributions as dist

    if any(form != "n" for form in space.stage_forms):
        raise ValueError(f"{who}: N-form stages (P's values depend on N) are not mapped to a "
                         f"flat config space; stage forms here: {space.stage_forms}")
    if space.budget.max_params is not None or space.budget.max_macs is not None:
        raise ValueError(f"{who}: a space with a budget is not mapped (the peer cannot reject "
                         "points over it)")
    dims = []
    back = {}  # path -> the peer's value -> the space's value (types as the space has them)
    for path, d in space.dims.items():
        if not dist.is_searched(d):
            continue
        if isinstance(d, dist.Choice):
            labels = [str(v) for v in d.values]
            dims.append((path, "choice", labels))
            back[path] = dict(zip(labels, d.values)).__getitem__
        elif isinstance(d, dist.Range) and d.step is not None and not (d.integer and d.step == 1):
            grid = dist.values(d)  # a stepped range: its grid, in order
            labels = [repr(v) for v in grid]
            dims.append((path, "ordinal", labels))
            back[path] = dict(zip(labels, grid)).__getitem__
        elif isinstance(d, dist.Range) and d.integer:
            dims.append((path, "int", (int(d.low), int(d.high), d.log)))
            back[path] = int
        elif isinstance(d, dist.Range):
            dims.append((path, "float", (float(d.low), float(d.high), d.log)))
            back[path] = float
        else:
            raise ValueError(f"{who}: {path}: distribution {d!r} is not mapped to a flat space")

    def decode(config) -> dict:
        return {path: value_of(config[path]) for path, value_of in back.items()}

    return dims, decode


def trial_values(space, searched: dict) -> dict:
    """The values `trial_config` reads (every dimension, N of n-form stages) from the searched
    dimensions' values (`flat_space`'s `decode`)."""
    from gunn_search.space import distributions as dist

    values = {path: searched[path] if path in searched else dist.first(d)
              for path, d in space.dims.items()}
    for i in range(len(space.stage_forms)):  # n-form: N = n * P, as sample() computes it
        p = f"model.stages.{i}"
        values[f"{p}.N"] = values.pop(f"{p}.n") * values[f"{p}.P"]
    return values


def config_space(space, seed: int):
    """The ConfigSpace of `space`'s searched dimensions (`flat_space`: a choice is categorical,
    a stepped range ordinal, an integer or float range an integer or float, log ones log), and
    the function turning one of its configurations into the values `trial_config` reads."""
    import ConfigSpace as CS

    dims, decode = flat_space(space)
    cs = CS.ConfigurationSpace(seed=seed)
    for path, kind, spec in dims:
        if kind == "choice":
            cs.add(CS.CategoricalHyperparameter(path, spec))
        elif kind == "ordinal":
            cs.add(CS.OrdinalHyperparameter(path, spec))
        elif kind == "int":
            cs.add(CS.UniformIntegerHyperparameter(path, spec[0], spec[1], log=spec[2]))
        else:
            cs.add(CS.UniformFloatHyperparameter(path, spec[0], spec[1], log=spec[2]))
    return cs, lambda config: trial_values(space, decode(config))


def make_dehb(cs, seed: int, max_fidelity: int, out: str):
    """DEHB (eta 3, fidelities 1..max_fidelity) seeded, its files under `out`, its logging off."""
    from dehb import DEHB
    from loguru import logger

    dehb = DEHB(cs=cs, f=None, min_fidelity=1, max_fidelity=max_fidelity, eta=3, seed=seed,
                n_workers=1, output_path=out, save_freq="end", log_level="ERROR")
    logger.remove()  # the stdout and file sinks DEHB's constructor set up
    logger.disable("dehb")
    return dehb


def run_seed(seed: int, budget: int) -> dict:
    from digits_problem import EPOCHS, run_config
    from search_efficiency import EpochLog, peer_problem

    from trainers.loop import train

    space, data = peer_problem(seed)  # two evaluations in threads, one core each
    cs, to_values = config_space(space, seed)
    out = tempfile.mkdtemp(prefix="gunn-dehb-")
    log, stop = EpochLog(budget), threading.Event()

    def evaluate(n: int, job: dict) -> dict | None:
        fidelity = max(1, int(round(job["fidelity"])))
        cfg = run_config(space, to_values(job["config"]))
        last = []

        def on_epoch(m: dict, _ckpt) -> bool:
            if not log.add(n, m, fidelity=fidelity, config_id=int(job["config_id"])):
                stop.set()
                return True
            if log.spent:
                stop.set()  # no new evaluation starts; this one stops at its next epoch
            last.append(m)
            return m["epoch"] >= fidelity  # the 12-epoch schedule, stopped after `fidelity`

        train(cfg, data=data, log=lambda msg: None, on_epoch=on_epoch)
        if not last or last[-1]["epoch"] < fidelity:
            return None  # cut by the budget: not told
        return {"fitness": 1.0 - last[-1]["val_acc"], "cost": float(fidelity)}

    try:
        dehb = make_dehb(cs, seed, EPOCHS, out)
        n, running = 0, {}
        with cf.ThreadPoolExecutor(2) as pool:
            while True:
                while len(running) < 2 and not stop.is_set():
                    job = dehb.ask()
                    running[pool.submit(evaluate, n, job)] = job
                    n += 1
                if not running:
                    break
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    job, res = running.pop(fut), fut.result()
                    if res is not None:
                        dehb.tell(job, res)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"events": log.events, "wall": time.time() - log.t0, "num_samples": n, "errors": [],
            # DEHB's incumbent: the best val_acc it was told (a cut evaluation is not told)
            "incumbent_val_acc": None if dehb.inc_score == float("inf") else 1.0 - dehb.inc_score}


def main() -> None:
    from search_efficiency import run_peer

    # dehb 0.1.2 calls ConfigSpace's deprecated names (get_hyperparameters, get_dictionary)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    run_peer(__doc__, "dehb", run_seed,
             lambda s: f"{s['trials']} evaluations, {s['full_trials']} at 12 epochs")


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
    main()
