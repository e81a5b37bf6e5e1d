"""Running `gunn-search ablate`: GUNN against SUNN and GUNN-NoRes, paired by seed (the paper's
Table 5).

The ablated config is a trial's exact training config (its `train_config.yaml` artifact; by
default the best trial of the experiment's newest search, found as `export` finds it). It trains
once per variant and seed (`gunn_search.ablation.variants`), and the variants are compared seed
by seed (`gunn_search.ablation.report`, `gunn_search.ablation.stats`).

The runs are Ray Tune trials of the search's own trainable (retried from their last checkpoint
on failure), logged as nested MLflow runs under a parent run tagged `gunn_search.role = ablation`
that ends with the table as its description, `ablation.md` and `ablation.json`. The command
itself is `gunn_search.cli.ablate`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from trainers.config import TrainConfig, dump_config

from gunn_search.run import interrupts
from gunn_search.errors import SearchError
from gunn_search.ablation.report import AblationResult, final_error, to_json, to_markdown
from gunn_search.ablation.variants import (
    LABELS,
    ablation_space,
    base_config,
    cell_values,
    check_pairing,
    seeds_of,
    variant_config,
)
from gunn_search.tags import NOTE_TAG, PATH_TAG, SOURCE_TAG

ROLE = "ablation"


@dataclass
class AblationOptions:
    experiment: str
    tracking_uri: str
    variants: list[str]
    num_seeds: int = 3
    run_id: str | None = None
    epochs: int | None = None
    final: bool = False
    data_dir: str | None = None
    gpus_per_trial: float | str = "auto"
    cpus_per_trial: float = 1.0
    max_failures: int = 1
    storage: str = "gunn-search-runs"
    address: str | None = None
    resume: bool = False  # continue the newest interrupted ablation of this trial


def source_config(client, experiment: str, run_id: str | None) -> tuple[str, str, TrainConfig]:
    """(search run id, trial run id, the config it trained): `run_id`, or the best trial of the
    experiment's newest search (as `gunn-search export` picks it)."""
    from gunn_search.results.export import read_trial_config

    return read_trial_config(client, experiment, run_id)


def run_ablation(opts: AblationOptions) -> AblationResult:
    """Train every (variant, seed) as a Tune trial, log them to MLflow, return the outcome."""
    from gunn_search import private_names

    private_names.check(private_names.ABLATE)  # before anything starts (api.plan_ablation too)
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    client = MlflowClient(opts.tracking_uri)
    search_id, source_id, cfg = source_config(client, opts.experiment, opts.run_id)
    base = base_config(cfg, opts.epochs, opts.final, opts.data_dir)
    seeds = seeds_of(base, opts.num_seeds)
    configs = {(v, s): variant_config(base, v, s) for s in seeds for v in opts.variants}
    from trainers.loop import check_data_present
    check_data_present(base.data)
    n = check_pairing(base, opts.variants, seeds[0])
    log(f"ablating trial run {source_id}: {', '.join(LABELS[v] for v in opts.variants)} x seeds "
        f"{', '.join(map(str, seeds))}, {base.epochs} epoch{'s' if base.epochs != 1 else ''} each on "
        f"{base.data.name} "
        f"({'test' if opts.final else 'validation'} error); seed {seeds[0]}: the variants' "
        f"initial weights are identical ({n} tensors compared)")

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    from gunn_search.run.state_saves import atomic_state_uploads
    atomic_state_uploads()  # a full disk never leaves a half-written state to resume from
    import ray
    from ray import tune

    from gunn_search.run import resources
    from gunn_search.ablation.callback import AblationCallback, ablation_runs, ablation_trial
    from gunn_search.run.search_runs import mark_killed
    from gunn_search.run.search_names import safe_name
    from gunn_search.run.progress import ProgressCallback

    from gunn_search.run.ray_session import init_ray

    own_ray = init_ray(opts.address)
    interrupts.reclaim()
    try:
        # auto: a whole GPU per run where there are GPUs (each run is a full training; runs
        # queue for them), else the CPU.
        per_gpu = resources.resolve(opts.gpus_per_trial, 1, log)
        exp_id = client.get_experiment_by_name(opts.experiment).experiment_id
        space = ablation_space(base, opts.variants, seeds, opts.cpus_per_trial, per_gpu)
        trainable = tune.with_resources(tune.with_parameters(ablation_trial, space=space),
                                        {"cpu": opts.cpus_per_trial, "gpu": per_gpu})
        callback = None
        if opts.resume:
            parent_id, path = interrupted_ablation(client, exp_id, source_id, opts.variants, seeds)
            client.update_run(parent_id, status="RUNNING")
            log(f"resuming ablation run {parent_id} ({path})")
            # Its callbacks (the MLflow one with them) come back from the pickled experiment.
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            name = f"ablation-{safe_name(opts.experiment)}-{time.strftime('%Y%m%d-%H%M%S')}"
            storage = opts.storage if "://" in opts.storage else str(Path(opts.storage).resolve())
            path = f"{storage.rstrip('/')}/{name}"
            parent = client.create_run(exp_id, run_name=f"ablation-{source_id[:8]}", tags={
                tr.ROLE_TAG: ROLE, SOURCE_TAG: source_id, tr.SEARCH_TAG: search_id,
                PATH_TAG: path})
            parent_id = parent.info.run_id
            callback = AblationCallback(opts.tracking_uri, exp_id, parent_id, configs)
            params = {k: v for k, v in tr.config_params(base).items()
                      if k not in ("model.family", "model.residual", "seed")}
            params.update({"ablation.variants": ",".join(opts.variants),
                           "ablation.seeds": ",".join(map(str, seeds)),
                           "ablation.source_run_id": source_id, "max_failures": opts.max_failures,
                           "resources.cpus_per_trial": opts.cpus_per_trial,
                           "resources.gpus_per_trial": per_gpu})
            tr.batch(tr.BufferedClient(client), parent_id, params=params)
            cells = [cell_values(v, s) for s in seeds for v in opts.variants]
            tuner = tune.Tuner(
                trainable,
                param_space={"run": tune.grid_search(cells)},
                tune_config=tune.TuneConfig(reuse_actors=True),
                run_config=tune.RunConfig(
                    name=name, storage_path=storage,
                    callbacks=[callback, ProgressCallback(len(cells), base.epochs)],
                    failure_config=tune.FailureConfig(max_failures=opts.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0))
        interrupts.on_abort(lambda: mark_killed(tr.BufferedClient(client), parent_id,
                                                interrupts.received()))
        # Tune's banner and hints go to stdout, which is for the table (as in the search).
        with (open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull),
              interrupts.tune_run()):
            results = tuner.fit()
        # A resumed ablation's callback is the one restored with it: its runs are read back.
        run_ids = (callback.run_ids() if callback is not None
                   else ablation_runs(client, exp_id, parent_id))
        result = collect(results, base, opts, seeds, source_id, search_id, parent_id, run_ids)
        result.interrupted = interrupts.received()
        if result.interrupted is not None:  # the callback has closed the cut runs
            mark_killed(tr.BufferedClient(client), parent_id, result.interrupted)
        else:
            finish_parent(client, result, base)
    except KeyboardInterrupt:  # a second signal: the runs this driver opened are closed
        interrupts.abort()
        raise
    finally:
        if own_ray:
            ray.shutdown()
    return result


def interrupted_ablation(client, exp_id: str, source_id: str, variants: Sequence[str],
                         seeds: Sequence[int]) -> tuple[str, str]:
    """(parent run id, Tune path) of the newest interrupted ablation of this trial with these
    variants and seeds; SearchError naming what is missing otherwise."""
    from gunn_search.track import store as tr

    runs = client.search_runs(
        [exp_id], f"tags.`{tr.ROLE_TAG}` = '{ROLE}' and tags.`{SOURCE_TAG}` = '{source_id}'",
        order_by=["attributes.start_time DESC"], max_results=100)
    want = (",".join(variants), ",".join(map(str, seeds)))
    for r in runs:
        if r.info.status != "KILLED" or PATH_TAG not in r.data.tags:
            continue
        if (r.data.params.get("ablation.variants"), r.data.params.get("ablation.seeds")) == want:
            return r.info.run_id, r.data.tags[PATH_TAG]
    raise SearchError(f"--resume: no interrupted ablation of trial run {source_id} with "
                      f"variants {want[0]} and seeds {want[1]} in experiment "
                      f"{client.get_experiment(exp_id).name!r}")


def collect(results, base: TrainConfig, opts: AblationOptions, seeds: list[int], source_id: str,
            search_id: str, parent_id: str, run_ids: dict) -> AblationResult:
    """The outcome from Tune's results (each run's last reported metrics)."""
    from gunn_search.status import Kind, status_of

    split = base.data.split
    errors = {v: {s: None for s in seeds} for v in opts.variants}
    statuses = {v: {} for v in opts.variants}
    for r in results:
        if not r.config:  # a cell an interrupted ablation never started
            continue
        cell = r.config["run"]
        v, s = cell["variant"], int(cell["seed"])
        last = r.metrics or {}
        # Not `ended`: nothing stops a cell early, one still running was cut by a signal.
        status = status_of(last, r.error)
        statuses[v][s] = str(status)
        if status.kind is Kind.COMPLETED:
            errors[v][s] = final_error(last, split)
    ids = {v: {s: rid for (vv, s), rid in run_ids.items() if vv == v} for v in opts.variants}
    return AblationResult(opts.experiment, source_id, search_id, base.data.name, split,
                          base.epochs, list(opts.variants), seeds, errors, statuses, ids,
                          parent_id)


def finish_parent(client, r: AblationResult, base: TrainConfig) -> None:
    """The table as the parent run's description and artifacts, its numbers as metrics."""
    from gunn_search.track import store as tr

    md = to_markdown(r)
    metrics = {}
    for v, s in r.summaries().items():
        metrics.update({f"{v}.error_mean": s.mean, f"{v}.error_std": s.std})
    for a, b, d in r.pairs():
        metrics.update({f"{a}_minus_{b}.mean": d.mean, f"{a}_minus_{b}.ci_low": d.ci_low,
                        f"{a}_minus_{b}.ci_high": d.ci_high})
    metrics = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
    buffered = tr.BufferedClient(client)
    tr.batch(buffered, r.parent_run_id, metrics=metrics, tags={NOTE_TAG: md})
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "ablation.md").write_text(md + "\n")
        (Path(d) / "ablation.json").write_text(json.dumps(to_json(r), indent=2) + "\n")
        dump_config(base, Path(d) / "ablation_config.yaml")
        for name in ("ablation.md", "ablation.json", "ablation_config.yaml"):
            buffered.call("log_artifact", r.parent_run_id, str(Path(d) / name))
    buffered.call("set_terminated", r.parent_run_id, "FAILED" if r.failed() else "FINISHED")
    buffered.flush()


def log(msg: str) -> None:
    print(f"gunn-search ablate: {msg}", file=sys.stderr, flush=True)

