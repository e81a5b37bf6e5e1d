"""Building, running and resuming the Tune search: OptunaSearch (TPE) + ASHA + MLflow.

A search lives in `<storage>/<experiment>/`: Tune's experiment state plus `gunn_search.json`
(the MLflow parent run, the space's fingerprint: `state_file`). Joining Ray: `ray_session`. `--resume` restores the Tuner from there
(`Tuner.restore`), so finished trials are not rerun, running ones continue from their last
checkpoint and the Optuna searcher's state comes back.
"""

from __future__ import annotations

import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from gunn_search import private_names
from gunn_search.run import faults
from gunn_search.run import compute_budget as budget
from gunn_search.run.compute_budget import Limits
from gunn_search.run import interrupts
from gunn_search.run import study
from gunn_search.track import ui as mlflow_ui
from gunn_search.errors import SearchError
from gunn_search.track import store as tr
from gunn_search.tags import FINGERPRINT_TAG, SPACE_TAG
from gunn_search.track.uri import shown_uri
from gunn_search.space.rungs import branch_epochs_per_trial
from gunn_search.space.rungs import describe as describe_schedule
from gunn_search.run.ray_session import check_address, init_ray
from gunn_search.run.state_file import changed_settings, read_state, resumed_settings, write_state
from gunn_search.run.state_saves import adapt_state_saves, atomic_state_uploads
from gunn_search.space import Space, fingerprint as space_fingerprint
from gunn_search.run.outcome import SearchOutcome, outcome
from gunn_search.run.trainable import train_trial
from gunn_search.status import METRIC

@dataclass
class SearchOptions:
    space_path: str
    experiment: str
    tracking_uri: str
    storage: str
    address: str | None = None
    resume: bool = False
    max_failures: int = 1
    artifact_root: str | None = None
    fingerprint: str | None = None  # of the space file as written (flag overrides left out)
    warm_start: str | None = None  # an earlier experiment whose trials the sampler is told
    warm_start_top: int = 3  # of those, the best K run first
    # The Optuna study's storage (gunn_search.run.study); None: the default SQLite file.
    optuna_storage: str | None = None
    # Which search of the experiment (gunn_search.run.search_names): its Tune folder, study and
    # parent run; None: the experiment's name (its first search).
    search: str | None = None

    @property
    def name(self) -> str:
        return self.search or self.experiment


def experiment_path(opts: SearchOptions) -> str:
    """`<storage>/<experiment>`: a local path or a URI (s3://, gs://, file://) all nodes see."""
    name = tr_safe(opts.name)
    if "://" in opts.storage:
        return f"{opts.storage.rstrip('/')}/{name}"
    return str(Path(opts.storage).resolve() / name)


def storage_root(opts: SearchOptions) -> str:
    return opts.storage if "://" in opts.storage else str(Path(opts.storage).resolve())


def tr_safe(name: str) -> str:
    from gunn_search.run.search_names import safe_name
    return safe_name(name)


def open_experiment(opts: SearchOptions):
    """(client, experiment id): the tracking store opened (on a new SQLite file: its schema
    created, 1.4-1.7 s here, or waited for while another client creates it) and the experiment
    found or created."""
    client = tr.open_store(opts.tracking_uri)
    root = Path(opts.artifact_root) if opts.artifact_root else None
    return client, tr.get_or_create_experiment(client, opts.experiment, root)


def start_parent_run(space: Space, opts: SearchOptions, fingerprint: str, client, exp_id,
                     state: dict | None):
    """Create the experiment's parent run or, resuming (`state` read from the experiment
    directory), reopen it; returns its id."""
    if state is not None:
        client.update_run(state["parent_run_id"], status="RUNNING")
        return state["parent_run_id"]
    run = client.create_run(exp_id, run_name=f"search-{tr_safe(opts.name)}",
                            tags={tr.ROLE_TAG: "search", FINGERPRINT_TAG: fingerprint,
                                  SPACE_TAG: Path(opts.space_path).name})
    # The search's settings under their space-file paths; `search.seed` seeds the searcher,
    # `seed` the trials' training (each trial's run logs its own).
    params = {f"{section}.{k}": v for section in ("search", "resources", "budget")
              for k, v in getattr(space, section).model_dump(mode="json").items() if v is not None}
    params.update({"seed": space.base.seed, "data.name": space.base.data.name,
                   "max_epochs": space.max_epochs, "max_failures": opts.max_failures})
    tr.batch(tr.BufferedClient(client), run.info.run_id, params=params)
    client.log_artifact(run.info.run_id, opts.space_path)
    # The MLflow UI's view of this search's trials (the link `gunn-search` prints at the end).
    mlflow_ui.write_trials_view(client, exp_id, run.info.run_id, mlflow_ui.shown_params(space))
    return run.info.run_id


def build_tuner(space: Space, opts: SearchOptions, callbacks: list, on_searcher=None, stop=None):
    """The Tuner a search runs; `stop` is Tune's experiment stopper (benchmarks use one)."""
    from ray import tune

    s = space.search
    # Of Tune's default loggers only the JSON one is read (result.json: Result.metrics_dataframe,
    # ResumableASHA's replay); the TensorBoard one cost ~2 s of CPU importing tensorboardX at
    # every search's start, and it and the CSV one wrote every result again. A user who wants
    # them sets TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, space=space),
        {"cpu": space.resources.cpus_per_trial, "gpu": space.resources.gpus_per_trial})
    path = experiment_path(opts)
    if opts.resume:
        # Callbacks, searcher and scheduler come back from the pickled experiment state.
        from gunn_search.run.search_runs import answer_to_former_name

        answer_to_former_name()  # a search saved before the callback moved to run/
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    from gunn_search.run.decisions import search_parts

    searcher, scheduler = search_parts(
        space, study.open_storage(opts.optuna_storage) if opts.optuna_storage else None,
        opts.name, on_searcher, budget_folder=path)
    if s.has_budget:
        from gunn_search.run.budget_stopper import BudgetStopper
        if stop is not None:
            raise ValueError("a search with a compute budget takes no other stopper")
        stop = BudgetStopper(path, Limits.of(s), float(space.resources.gpus_per_trial))
    from ray.tune.logger import JsonLoggerCallback

    from gunn_search.run.spare_cpus import SpareCPUs
    callbacks = [*callbacks, JsonLoggerCallback(),
                 SpareCPUs(tr_safe(opts.name), s.max_concurrent,
                           space.resources.cpus_per_trial)]
    return tune.Tuner(
        trainable,
        # reuse_actors: a trial starts in a warm worker (torch already imported) instead of a
        # fresh process; smoke.yaml went from 65.7 s to 58.3 s wall here.
        tune_config=tune.TuneConfig(metric=METRIC, mode=s.mode, search_alg=searcher,
                                    scheduler=scheduler, num_samples=s.num_samples,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=tr_safe(opts.name), storage_path=storage_root(opts), callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=opts.max_failures), stop=stop,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0),
    )


def run_search(space: Space, opts: SearchOptions,
               on_outcome: Callable[[SearchOutcome], None] | None = None) -> SearchOutcome:
    """Run (or resume) a search to the end; MLflow holds everything it did.

    `on_outcome` gets the outcome as soon as it is known, before Ray shuts down.
    """
    private_names.check(private_names.SEARCH)  # before anything starts (api.plan_search too)
    # Tune writes its experiment state every ~10 s by default; a driver killed inside that
    # window reruns finished trials on resume (docs/runtime.md). Write it every second instead.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # ... or less often once a save takes over 1/19 s (a big search): at most ~5 % of the time.
    adapt_state_saves()
    # ... and never leave a half-written state on a disk that filled up.
    atomic_state_uploads()
    from ray import tune

    fingerprint = opts.fingerprint or space_fingerprint(space)
    path = experiment_path(opts)
    state = read_state(path)
    if opts.resume:
        if state is None:
            raise SearchError(f"--resume: no previous search {opts.name!r} "
                              f"in {path}")
        if state["fingerprint"] != fingerprint:
            raise SearchError(f"--resume: {opts.space_path} differs from the space this search "
                              f"started with ({state['space_path']}); resume with the same file")
        changed = changed_settings(state, space)
        if changed:
            raise SearchError(f"--resume: the search started with {', '.join(changed)}; resume "
                              "with the same (a resumed search keeps its trials' settings)")
        if not tune.Tuner.can_restore(path):
            raise SearchError(f"--resume: the search in {path} has no Tune state to restore "
                              "(it was stopped before its first trial)")
    elif state is not None:
        raise SearchError(f"a search {opts.name!r} already exists in {path}; "
                          "use --resume to continue it or --experiment NAME for a new one")

    def taken_here(name: str) -> bool:
        return read_state(experiment_path(replace(opts, search=name))) is not None

    url, name = study.storage_for(opts, state, storage_root(opts), space, taken_here)
    if name != opts.name:  # another search took this name meanwhile: this one is the next
        opts = replace(opts, search=name)
        path = experiment_path(opts)
    opts = replace(opts, optuna_storage=url)
    try:
        return _run(space, opts, fingerprint, path, state, on_outcome, log)
    except BaseException:
        if not opts.resume and read_state(path) is None:  # claimed, never started: give it back
            study.release(url, name)
        raise


def _run(space, opts, fingerprint, path, state, on_outcome, log):
    """run_search once the search's name and study are settled."""
    import ray

    from gunn_search.run.search_runs import MLflowSearchCallback, mark_killed
    from gunn_search.run.progress import ProgressCallback

    if opts.address:
        check_address(opts.address)

    # A cluster is joined before anything is written, so a failed join leaves nothing
    # half-started behind. A Ray instance of our own does not fail that way: open the tracking
    # store meanwhile (on a new SQLite file its schema, 1.4-1.7 s here) while ray.init waits
    # for the node's processes (2.5 s).
    store = None
    if not opts.address:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-open")
        store = pool.submit(open_experiment, opts)
        pool.shutdown(wait=False)
    # Test failpoints (gunn_search.run.faults) travel to the workers through the runtime env.
    env_vars = {k: os.environ[k] for k in (faults.ENV_FAULTS, faults.ENV_DIR) if k in os.environ}
    try:
        own_ray = init_ray(opts.address, {"env_vars": env_vars} if env_vars else None)
        interrupts.reclaim()
    except BaseException:
        if store is not None:
            wait([store])  # never exit with the store's schema half-written
        raise
    try:
        space = resolve_resources(space)
        log(f"{'resuming' if opts.resume else 'starting'} search {opts.name!r}"
            f"{'' if opts.name == opts.experiment else f' of experiment {opts.experiment!r}'}: "
            f"{budget.trials_text(space.search, path)}, up to {space.max_epochs} epochs each, "
            f"{describe_schedule(space.search, space.max_epochs)}; MLflow at {shown_uri(opts.tracking_uri)}")
        try:
            client, exp_id = store.result() if store is not None else open_experiment(opts)
            past = None
            if opts.warm_start and not opts.resume:  # before anything of this search is written
                from gunn_search.results import warm_start
                past = warm_start.load_trials(client, opts.warm_start)
            parent_id = start_parent_run(space, opts, fingerprint, client, exp_id, state)
            interrupts.on_abort(lambda: mark_killed(tr.BufferedClient(client), parent_id,
                                                    interrupts.received()))
        except SearchError:
            raise
        except Exception as e:  # MlflowException, connection errors: the store is unusable
            raise SearchError(f"tracking URI {shown_uri(opts.tracking_uri)}: cannot start the search's "
                              f"MLflow run ({tr.shown_line(str(e))})") from None
        write_state(path, {
            "parent_run_id": parent_id, "experiment_id": exp_id,
            "tracking_uri": opts.tracking_uri, "fingerprint": fingerprint,
            "space_path": str(opts.space_path), "settings": resumed_settings(space),
            "experiment": opts.experiment, "search": opts.name,
            "optuna_storage": study.shown(opts.optuna_storage)})
        callbacks = [MLflowSearchCallback(opts.tracking_uri, exp_id, parent_id, space,
                                          str(opts.space_path)),
                     ProgressCallback(space.search.num_samples, space.max_epochs,
                                      branch_epochs=branch_epochs_per_trial(space.search,
                                                                            space.max_epochs),
                                      budget=(path, Limits.of(space.search))
                                      if space.search.has_budget else None)]
        on_searcher = None
        if past is not None:
            def on_searcher(searcher):
                from gunn_search.results import warm_start
                w = warm_start.apply(searcher, space, past, opts.warm_start, opts.warm_start_top)
                log(f"warm start from {w.experiment!r}: {w.used} earlier trials told to the "
                    f"sampler, {w.outside} outside this space skipped, the best {w.enqueued} "
                    "run first")
                tr.batch(tr.BufferedClient(client), parent_id, params={
                    "warm_start.experiment": w.experiment, "warm_start.used": w.used,
                    "warm_start.outside": w.outside, "warm_start.top": w.enqueued})
        tuner = build_tuner(space, opts, callbacks, on_searcher)
        # Tune prints a banner, the results path and a TensorBoard hint on stdout whatever its
        # verbosity (ray/tune/experimental/output.py): stdout is for our results and stderr for
        # our progress, so they go nowhere. Its warnings and errors still reach stderr (logging).
        with (open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull),
              interrupts.tune_run()):
            results = tuner.fit()
        interrupt = interrupts.received()
        if interrupt is None:
            study.end(opts.optuna_storage, opts.name, log)
            if not any(r.error is not None for r in results):
                # Nothing left for --resume alone to continue (errored trials are: it reruns
                # them). A disk that is full now does not fail a search that finished.
                try:
                    write_state(path, {**read_state(path), "finished": True})
                except SearchError as e:
                    log(f"could not mark the search finished ({e})")
            out = outcome(results, opts.experiment, path, parent_id, client, space)
        else:  # the MLflow callback has closed the runs as interrupted (on_experiment_end)
            out = SearchOutcome(opts.experiment, parent_id, None, None, None, None, len(results),
                                path, interrupted=interrupt)
        out.experiment_id = exp_id
        out.optuna_storage = study.shown(opts.optuna_storage)
        out.budget = budget.summary(space.search, path, len(results))
        out.search = opts.name
        if on_outcome is not None:
            on_outcome(out)
            sys.stdout.flush()
    except KeyboardInterrupt:
        # A second signal cut Tune's own stop short (or one came before Tune ran): close the
        # runs this driver opened as interrupted; what a resume needs is already on disk.
        interrupts.abort()
        raise
    finally:
        if own_ray:
            ray.shutdown()
        from gunn_search.run.compute_budget import forget
        forget(path)  # read again from its file by a later search of this process
    return out


def resolve_resources(space: Space) -> Space:
    """The space with `gpus_per_trial: auto` turned into a number for the Ray cluster joined
    (gunn_search.run.resources), said on stderr."""
    import dataclasses

    from gunn_search.run import resources

    r = space.resources
    per = resources.resolve(r.gpus_per_trial, space.search.max_concurrent, log)
    return dataclasses.replace(space, resources=r.model_copy(update={"gpus_per_trial": per}))


def log(msg: str) -> None:
    print(f"gunn-search: {msg}", file=sys.stderr, flush=True)
