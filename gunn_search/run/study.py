"""The search's Optuna study, kept where Optuna's own tools can open it (optuna-dashboard).

Ray's `OptunaSearch` keeps its study in memory (pickled into Tune's state) unless it is given an
Optuna storage object; then every trial it asks, every epoch it reports and every trial it tells
goes to that storage as it happens, and `optuna-dashboard <storage>` shows the study live. Only
an RDB storage will do: Tune pickles the searcher, and Optuna's RDB storage pickles as its URL
(journal and Redis storages do not pickle). The driver is the only writer.

- Where: `--optuna-storage URL` (Postgres/MySQL on a cluster), else a SQLite file `optuna.db`
  next to the MLflow store when that is a SQLite file, else in the search's local `--storage`
  directory, else in the working directory.
- Which study: one per search, named after it (`search_names`). A new search creates its study
  before Ray starts, under the first search name free both in its storage and in the local
  folder (`claim`): a study another search holds is never reused (its trials would be told to
  the new search's TPE, unasked); `--resume` continues the search's own.
- Every trial carries its Tune trial id and its MLflow run id as user attributes; the MLflow
  callback (same process) publishes the run ids through `publish_run_ids`.
- No trial is left RUNNING: a resumed search fails the study's trials that Tune will not run
  again (a trial started after Tune's last state save: Optuna users know such zombies), and a
  search that ended fails any trial still RUNNING. A trial that ended after that save and
  that Tune runs again goes on in a new Optuna trial with its parameters (`rerun_of`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from gunn_search import private_names
from gunn_search.errors import SearchError
from gunn_search.track.uri import connect_args, database_error

STUDY_FILE = "optuna.db"
RUN_ID_ATTR = "mlflow_run_id"
TRIAL_ID_ATTR = "tune_trial_id"
RERUN_OF_ATTR = "rerun_of"

# trial id -> MLflow run id (None until known), set by the MLflow callback in the driver. A
# module-level hook rather than a reference: Tune pickles the searcher and the callbacks apart,
# so a reference from one to the other would not survive a resume; both live in the driver.
_run_id_of: Callable[[str], str | None] = lambda trial_id: None  # noqa: E731


def default_storage(tracking_uri: str, storage_root: str) -> str:
    """The SQLite file a search keeps its study in when `--optuna-storage` is not given."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).parent / STUDY_FILE}"
    folder = Path(storage_root) if "://" not in storage_root else Path.cwd()
    return f"sqlite:///{folder.resolve() / STUDY_FILE}"


def shown(url: str) -> str:
    """The storage URL with any password masked: what logs, tags and printed commands carry."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: nothing to mask
        return url


def open_storage(url: str):
    """The Optuna RDB storage at `url` (its schema created if new)."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # optuna-dashboard reads while the search writes: wait for a lock, do not fail on it.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args(url)})


def study_exists(storage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def publish_run_ids(run_id_of: Callable[[str], str | None]) -> None:
    """Tell the searcher where to find a trial's MLflow run id (`run_id_of(trial_id)`)."""
    global _run_id_of
    _run_id_of = run_id_of


def run_id_of(trial_id: str) -> str | None:
    return _run_id_of(trial_id)


def fail_running(study, keep: set[int] = frozenset()) -> int:
    """Mark the study's RUNNING trials FAIL, except those whose numbers are in `keep` (trials
    the search will still tell); returns how many."""
    from optuna.trial import TrialState

    storage = private_names.study_storage(study)  # no public way to end another's trial
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number not in keep:
            storage.set_trial_state_values(private_names.storage_trial_id(t), TrialState.FAIL)
            failed += 1
    return failed


def rerun(study, old):
    """A new RUNNING trial with `old`'s parameters, for a trial Tune runs again after its Optuna
    trial finished; it names the trial it repeats (`RERUN_OF_ATTR`)."""
    study.enqueue_trial(old.params, user_attrs={RERUN_OF_ATTR: old.number})
    return study.ask(fixed_distributions=old.distributions)


def directions(space) -> list[str]:
    """The study's directions, as Ray's OptunaSearch sets them from the search's objectives."""
    return [("maximize" if o.mode == "max" else "minimize") for o in space.search.objective_list]


def storage_for(opts, state: dict | None, storage_root: str, space,
                taken_here: Callable[[str], bool] = lambda name: False) -> tuple[str, str]:
    """The study's storage URL and the search's name, for a search (`SearchOptions`), checked
    before Ray starts. A resumed search's study must be there; it keeps its storage (one whose
    password the state file does not keep is given again with --optuna-storage). A new search
    claims its study now, under the first free name from `opts.name` on (`claim`)."""
    url, name = opts.optuna_storage, opts.name
    if opts.resume and state is not None and state.get("optuna_storage"):
        kept = state["optuna_storage"]
        if url is None and "***" in kept:
            raise SearchError(f"--resume: give --optuna-storage again ({kept}; its password is "
                              "not kept)")
        url = url or kept
    url = url or default_storage(opts.tracking_uri, storage_root)
    try:
        storage = open_storage(url)
        exists = study_exists(storage, name)
    except Exception as e:  # a bad URL, a server down, a wrong password, no driver for it
        raise SearchError(f"--optuna-storage {shown(url)}: cannot open it ({database_error(e)})") from None
    if opts.resume:
        if state is not None and not exists:
            raise SearchError(f"--resume: the Optuna storage {shown(url)} has no study {name!r}")
        return url, name
    return url, claim(storage, opts.experiment, name, directions(space), taken_here)


def claim(storage, experiment: str, first: str, dirs: list[str],
          taken_here: Callable[[str], bool]) -> str:
    """Create the new search's study under `first`, or the next search name of `experiment`
    (`search_names`) whose study does not exist yet and whose folder `taken_here` does not
    know: two searches started at once against one storage (two machines, two terminals) take
    two names, since the database lets only one of them create a study of a name. Ray's
    OptunaSearch later loads the study it finds (load_if_exists)."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError
    from optuna.study import StudyDirection

    from gunn_search.run.search_names import following

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in RDB"
    for name in following(experiment, first):
        if taken_here(name):
            continue
        try:
            storage.create_new_study([StudyDirection[d.upper()] for d in dirs], name)
            return name
        except DuplicatedStudyError:
            continue
    raise AssertionError("unreachable: following() is endless")


def release(url: str, name: str) -> None:
    """Delete a study this driver claimed and never used (the search failed before any trial):
    a later search may have its name. Best effort: a store that fails now keeps it."""
    try:
        storage = open_storage(url)
        sid = storage.get_study_id_from_name(name)
        if not storage.get_all_trials(sid, deepcopy=False):
            storage.delete_study(sid)
    except Exception:  # gone, or the database is what failed: nothing to undo here
        pass


def end(url: str, name: str, log: Callable[[str], None]) -> None:
    """A finished search leaves no trial of its study RUNNING."""
    import optuna

    failed = fail_running(optuna.load_study(study_name=name, storage=open_storage(url)))
    if failed:
        log(f"{failed} Optuna trial{'s' if failed != 1 else ''} left RUNNING marked FAIL")
