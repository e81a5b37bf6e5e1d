"""`gunn-search ablate`: GUNN against SUNN and GUNN-NoRes, paired by seed (the paper's Table 5).

    gunn-search ablate --experiment smoke --variants gunn,sunn,gunn-nores --seeds 3

The ablated config is a trial's exact training config (its `train_config.yaml` artifact; by
default the best trial of the experiment's newest search, found as `export` finds it). It trains
once per variant and seed: the variants change only `model.family` and `model.residual`, the seeds
only `seed`. `seed` fixes the initial weights (`torch.manual_seed(seed)` before the model is
built; GUNN, SUNN and their NoRes forms hold the same modules under the same names, so they start
from the same weights) and the data order and augmentation (a generator seeded `seed + 1`,
independent of the model): the runs of one seed differ in the variant alone, and the variants are
compared seed by seed (`gunn_search.ablation.stats`).

The runs are Ray Tune trials of the search's own trainable (retried from their last checkpoint
on failure), logged as nested MLflow runs under a parent run tagged `gunn_search.role = ablation`
that ends with the table as its description, `ablation.md` and `ablation.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainers.config import ModelConfig, TrainConfig, dump_config, num_classes, parse_config
from trainers.model.spec import model_spec

from gunn_search.run import interrupts
from gunn_search.errors import SearchError, UsageError
from gunn_search.ablation.stats import PairedDifference, Summary, paired_difference, summarize

# variant -> (model.family, model.residual)
VARIANTS = {"gunn": ("gunn", True), "sunn": ("sunn", True),
            "gunn-nores": ("gunn", False), "sunn-nores": ("sunn", False)}
LABELS = {"gunn": "GUNN", "sunn": "SUNN", "gunn-nores": "GUNN-NoRes", "sunn-nores": "SUNN-NoRes"}
DEFAULT_VARIANTS = "gunn,sunn,gunn-nores"
ROLE = "ablation"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
SOURCE_TAG = "gunn_search.ablated_run_id"
PATH_TAG = "gunn_search.tune_path"  # the Tune experiment a `--resume` restores
CONFIDENCE = 0.95


# --- what the runs train ---------------------------------------------------------------------------

def parse_variants(text: str) -> list[str]:
    """`gunn,sunn,gunn-nores` -> the variants, in order; UsageError on an unknown or repeated
    name or fewer than two."""
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    for v in names:
        if v not in VARIANTS:
            raise UsageError(f"--variants: unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--variants: a variant is named twice ({text})")
    if len(names) < 2:
        raise UsageError(f"--variants: give at least two variants to compare (got {text!r})")
    return names


def base_config(cfg: TrainConfig, epochs: int | None = None, final: bool = False,
                data_dir: str | None = None) -> TrainConfig:
    """The trial's config as the ablation trains it: the model as explicit stages (a registered
    model by name fixes its family), `epochs`, the final split and the data directory when given,
    and no tracking section of its own."""
    data = cfg.model_dump(mode="json")
    data["tracking"] = None
    if cfg.model.name is not None:
        spec = model_spec(cfg.model.name, num_classes(cfg.data))
        model = ModelConfig.from_spec(spec, gunn_mode=cfg.model.gunn_mode)
        data["model"] = model.model_dump(mode="json") | {"residual": cfg.model.residual}
    if epochs is not None:
        data["epochs"] = epochs
    if final:
        data["data"]["split"] = "final"
    if data_dir is not None:
        data["data"]["data_dir"] = str(Path(data_dir).expanduser().resolve())
    return parse_config(data, "ablated config")


def seeds_of(base: TrainConfig, n: int) -> list[int]:
    """The ablation's seeds: the trial's own seed and the n - 1 after it."""
    return [base.seed + k for k in range(n)]


def cell_values(variant: str, seed: int) -> dict:
    """The dotted config paths a cell sets (and its labels), as a trial's config holds them."""
    family, residual = VARIANTS[variant]
    return {"variant": variant, "seed": seed, "model.family": family, "model.residual": residual}


def variant_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """What the cell (variant, seed) trains: `base` with its family, residual and seed."""
    v = cell_values(variant, seed)
    data = base.model_dump(mode="json")
    data["model"]["family"], data["model"]["residual"] = v["model.family"], v["model.residual"]
    data["seed"] = seed
    return parse_config(data, f"{variant} seed {seed}")


def ablation_space(base: TrainConfig, variants: Sequence[str], seeds: Sequence[int],
                   cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0):
    """The ablation as a space: `base` with choices on model.family, model.residual and seed,
    so that `gunn_search.run.trainable.train_trial` trains a cell exactly as it trains a search's
    sample (`trial_config` puts the cell's values into `base`). Tune enumerates the cells."""
    import dataclasses

    from gunn_search.space import parse_space

    data = base.model_dump(mode="json", exclude={"tracking"})
    # A space selects on the validation split; a final ablation's base is put back afterwards.
    data["data"]["split"] = "search"
    fams = list(dict.fromkeys(VARIANTS[v][0] for v in variants))
    ress = list(dict.fromkeys(VARIANTS[v][1] for v in variants))
    data["model"]["family"] = {"choice": fams}
    data["model"]["residual"] = {"choice": ress}
    data["seed"] = {"choice": list(seeds)}
    # fifo: every cell trains to the end (the ablation's Tuner has no ASHA; the space says so)
    data.update(search={"num_samples": len(variants) * len(seeds), "scheduler": "fifo",
                        "max_concurrent": len(variants) * len(seeds)},
                resources={"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial})
    space = parse_space(data, "ablation")
    return dataclasses.replace(space, base=base.model_copy(update={"tracking": None}))


def check_pairing(base: TrainConfig, variants: Sequence[str], seed: int) -> int:
    """Build every variant's model as training does (`torch.manual_seed(seed)`, then the model)
    and check they start from the same weights: every tensor of the same name and shape equal.
    Returns how many tensors were compared; SearchError if any differs."""
    import torch

    from trainers.model.network import build_model

    states = {}
    for v in variants:
        cfg = variant_config(base, v, seed)
        torch.manual_seed(seed)
        model = build_model(cfg.model.network_spec(num_classes(cfg.data)),
                            gunn_mode=cfg.model.gunn_mode)
        states[v] = model.state_dict()
    first, ref = variants[0], states[variants[0]]
    compared = 0
    for v in variants[1:]:
        for name, t in states[v].items():
            if name in ref and ref[name].shape == t.shape:
                if not torch.equal(ref[name], t):
                    raise SearchError(f"{v} and {first} do not start from the same weights with "
                                      f"seed {seed} ({name} differs); the pairing is broken")
                compared += 1
    return compared


# --- the outcome -----------------------------------------------------------------------------------

@dataclass
class AblationResult:
    """Every cell's final error (%) by variant and seed; None where the run gave no result."""

    experiment: str
    source_run_id: str
    search_run_id: str
    data: str
    split: str  # search (validation error) or final (test error)
    epochs: int
    variants: list[str]
    seeds: list[int]
    errors: dict[str, dict[int, float | None]]
    statuses: dict[str, dict[int, str]] = field(default_factory=dict)
    run_ids: dict[str, dict[int, str]] = field(default_factory=dict)
    parent_run_id: str = ""
    # Set when Ctrl-C or SIGTERM stopped it (gunn_search.run.interrupts): nothing is summarised,
    # `--resume` continues it.
    interrupted: "interrupts.Interrupt | None" = None

    @property
    def metric(self) -> str:
        return "test error" if self.split == "final" else "validation error"

    def summaries(self) -> dict[str, Summary]:
        return {v: summarize([e for e in self.errors[v].values() if e is not None])
                for v in self.variants}

    def pairs(self) -> list[tuple[str, str, PairedDifference]]:
        return [(a, b, paired_difference(self.errors[a], self.errors[b], CONFIDENCE))
                for a, b in pairs_of(self.variants)]

    def failed(self) -> list[tuple[str, int, str]]:
        return [(v, s, self.statuses.get(v, {}).get(s, "no result")) for v in self.variants
                for s in self.seeds if self.errors[v].get(s) is None]


def pairs_of(variants: Sequence[str]) -> list[tuple[str, str]]:
    """The comparisons: GUNN (else the first variant) against each other variant."""
    ref = "gunn" if "gunn" in variants else variants[0]
    return [(ref, v) for v in variants if v != ref]


def final_error(metrics: dict, split: str) -> float | None:
    """The error (%) of a run's last epoch, from its last reported metrics."""
    acc = metrics.get("test_acc" if split == "final" else "val_acc")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc):
        return None
    return 100.0 * (1.0 - float(acc))


def _num(x: float, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def to_markdown(r: AblationResult) -> str:
    """The Table-5-style table: per variant mean ± std, per pair the paired difference."""
    seeds = r.seeds

    def head(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [f"Paired ablation of trial run `{r.source_run_id}` (experiment {r.experiment}): "
             f"{r.data}, {r.epochs} epoch{'s' if r.epochs != 1 else ''}, final {r.metric} (%), "
             f"seeds {', '.join(map(str, seeds))}", ""]
    cols = ["variant", "error % (mean ± std)", *[f"seed {s}" for s in seeds]]
    lines += [head(cols), head(["---"] * len(cols))]
    for v, s in r.summaries().items():
        lines.append(head([LABELS[v], f"{_num(s.mean)} ± {_num(s.std)}",
                           *[_num(r.errors[v].get(seed)) for seed in seeds]]))
    lines.append("")
    pct = int(round(CONFIDENCE * 100))
    cols = ["pair", "paired mean difference (pp)", f"{pct} % CI (t, n-1 dof)",
            *[f"seed {s}" for s in seeds]]
    lines += [head(cols), head(["---"] * len(cols))]
    for a, b, d in r.pairs():
        ci = "n/a" if math.isnan(d.ci_low) else f"[{_num(d.ci_low, sign=True)}, " \
                                               f"{_num(d.ci_high, sign=True)}]"
        lines.append(head([f"{LABELS[a]} - {LABELS[b]}", f"{_num(d.mean, sign=True)} (n={d.n})",
                           ci, *[_num(d.diffs.get(s), sign=True) if s in d.diffs else "n/a"
                                 for s in seeds]]))
    lines += ["", "A negative difference: the first variant has the lower error. Same seed = same "
                  "initial weights and data order for every variant."]
    failed = r.failed()
    if failed:
        lines.append("No result (left out of the statistics): " + ", ".join(
            f"{LABELS[v]} seed {s} ({st})" for v, s, st in failed) + ".")
    return "\n".join(lines)


def to_json(r: AblationResult) -> dict:
    out = {k: getattr(r, k) for k in ("experiment", "source_run_id", "search_run_id",
                                      "parent_run_id", "data", "split", "epochs", "variants",
                                      "seeds")}
    out.update(metric=f"final {r.metric} (%)", confidence=CONFIDENCE, variant_stats={}, pairs=[])
    for v, s in r.summaries().items():
        out["variant_stats"][v] = {
            "label": LABELS[v], "n": s.n, "mean": _nan_none(s.mean), "std": _nan_none(s.std),
            "per_seed": {str(k): e for k, e in r.errors[v].items()},
            "status": {str(k): st for k, st in r.statuses.get(v, {}).items()},
            "run_ids": {str(k): rid for k, rid in r.run_ids.get(v, {}).items()}}
    for a, b, d in r.pairs():
        out["pairs"].append({"a": a, "b": b, "label": f"{LABELS[a]} - {LABELS[b]}", "n": d.n,
                             "mean": _nan_none(d.mean), "std": _nan_none(d.std),
                             "sem": _nan_none(d.sem), "ci_low": _nan_none(d.ci_low),
                             "ci_high": _nan_none(d.ci_high),
                             "per_seed": {str(k): x for k, x in d.diffs.items()}})
    return out


def _nan_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x


# --- running it --------------------------------------------------------------------------------------

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
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    client = MlflowClient(opts.tracking_uri)
    search_id, source_id, cfg = source_config(client, opts.experiment, opts.run_id)
    base = base_config(cfg, opts.epochs, opts.final, opts.data_dir)
    seeds = seeds_of(base, opts.num_seeds)
    configs = {(v, s): variant_config(base, v, s) for s in seeds for v in opts.variants}
    if base.data.name in ("cifar10", "cifar100"):  # a missing dataset: one line, before Ray
        from trainers.loop import load_data
        load_data(base.data, "cpu")
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
    from gunn_search.track.search_runs import mark_killed
    from gunn_search.results.export import safe_name
    from gunn_search.run.progress import ProgressCallback

    from gunn_search.run.ray_session import init_ray

    init_ray(opts.address)
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
    from gunn_search.results.status import Kind, TrialStatus

    split = base.data.split
    errors = {v: {s: None for s in seeds} for v in opts.variants}
    statuses = {v: {} for v in opts.variants}
    for r in results:
        if not r.config:  # a cell an interrupted ablation never started
            continue
        cell = r.config["run"]
        v, s = cell["variant"], int(cell["seed"])
        last = r.metrics or {}
        status = TrialStatus(last.get("trial_status", TrialStatus.RUNNING))
        if r.error is not None:
            status = TrialStatus.ERRORED
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


# --- the command ------------------------------------------------------------------------------------

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
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--storage", default="gunn-search-runs",
                   help="where Tune keeps the runs' checkpoints (default: ./gunn-search-runs; "
                        "on a cluster of several nodes, a URI every node reaches)")
    p.add_argument("--address", help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT")
    p.add_argument("--resume", action="store_true",
                   help="continue the newest interrupted ablation of this trial, variants and "
                        "seeds")
    return p


def cmd_ablate(argv: Sequence[str]) -> int:
    from gunn_search.cli.flags import check_gpus_here, gpus_request
    from gunn_search.track.uri import check_tracking_uri, default_tracking_uri

    args = ablate_parser().parse_args(argv)
    interrupts.install("gunn-search ablate")
    variants = parse_variants(args.variants)
    if args.seeds < 2:
        raise UsageError(f"--seeds must be >= 2 for a confidence interval (got {args.seeds})")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1 (got {args.epochs})")
    if args.max_failures < 0:
        raise UsageError("--max-failures must be >= 0")
    if args.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial must be > 0 (got {args.cpus_per_trial:g})")
    gpus = gpus_request(args.gpus_per_trial)  # the search's rule for the flag
    check_gpus_here(gpus, args.address)
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri[len('sqlite:///'):]} (run a search first, "
                         "or pass --tracking-uri)")
    if args.address:
        from gunn_search.run.ray_session import check_cluster
        check_cluster(args.address, uri)
    opts = AblationOptions(args.experiment, uri, variants, args.seeds, args.run_id, args.epochs,
                           args.final, args.data_dir, gpus, args.cpus_per_trial,
                           args.max_failures, args.storage, args.address, args.resume)
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
