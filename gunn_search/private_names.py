"""Every private name of Ray, Optuna and MLflow the code uses, and the versions it was tested with.

A private name (one starting with `_`, or anything under a `_private`/`_internal` module) can
change in any release. They are all here: each in `NAMES` with what it is needed for and what
breaks without it; the rest of the code reaches them through the functions below, or, for the
attributes our subclasses of Tune's classes inherit and use as their own (`ResumableASHA` in
run/scheduler.py, `ParetoBracket`, `StoppedAsPrunedOptunaSearch` in run/searcher.py), names them
in `NAMES` with the module that uses them (`used_in`). tests/test_private_names.py fails on a
private library name used anywhere else in gunn_search/ or trainers/; benchmarks/ uses none.

`check()` runs when a search or an ablation starts (api.plan_search, run_search,
api.plan_ablation, run_ablation), before Ray starts: a name that is gone ends the command with
one line naming the package, its installed version and the range tested (exit 2), instead of an
AttributeError halfway through a search. `TESTED` is the range pyproject.toml declares; its upper
bound is the next release line not yet tried.

Not a private name, but a Tune internal the code relies on all the same: the name of Tune's
SIGUSR1 stop function (run/interrupts.py `TUNE_STOP_FN`); without it Ctrl-C stops at once
instead of saving the state first (test_interrupts.py covers it). The private names of other
libraries the code uses are in `OTHERS`, with why they need no check.
"""

from __future__ import annotations

import dis
import functools
import importlib
import importlib.metadata
import inspect
import types
from dataclasses import dataclass

from gunn_search.errors import SearchError

# The versions each package was tested with, as pyproject.toml declares them (a test compares).
TESTED = {"ray": ">=2.60,<2.61", "optuna": ">=5.1,<5.2", "mlflow": ">=3.17,<3.18"}
# The pip requirement for each (what the one-line error tells to install).
REQUIREMENT = {"ray": "ray[tune]", "optuna": "optuna", "mlflow": "mlflow"}

SEARCH, ABLATE = "search", "ablate"

# Private names of other libraries, used where they are (the scanner lets these through).
OTHERS = {
    "_exit": "os._exit (cli/main.py): documented by Python, not private",
    "_foreach_copy_": "torch._foreach_copy_ (trainers/model/segmented.py): torch is pinned to "
                      "one version in pyproject.toml, its tested range",
    "_BatchNorm": "torch.nn.modules.batchnorm._BatchNorm (trainers/model/gunn_layer.py): the "
                  "base of every batch norm, torch pinned as above",
}


@dataclass(frozen=True)
class Private:
    """One private name: `name` in module `owner`, or, with `owner` "module:Class", an
    attribute of that class (its own, or one its methods set on instances)."""

    package: str  # the distribution it comes with (its version is the one reported)
    owner: str
    name: str
    why: str  # what the code needs it for
    breaks: str  # what goes wrong without it
    used_in: tuple[str, ...] = ()  # modules besides this one that use it directly (subclasses)
    commands: tuple[str, ...] = (SEARCH,)  # whose start checks it

    @property
    def dotted(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"


_ASHA = "ray.tune.schedulers.async_hyperband:AsyncHyperBandScheduler"
_BRACKET = "ray.tune.schedulers.async_hyperband:_Bracket"
_OPTUNA_SEARCH = "ray.tune.search.optuna:OptunaSearch"
_MANAGER = "ray.tune.execution.experiment_state:_ExperimentCheckpointManager"
_SCHEDULER = ("gunn_search/run/scheduler.py",)
_SEARCHER = ("gunn_search/run/searcher.py",)
_PRUNED_BREAKS = ("TPE ranks trials ASHA stopped early as complete ones, a restored search "
                  "leaves trials RUNNING in the study, --warm-start adds no trials")
_SAVES_BREAKS = ("a big search saves Tune's state every second: its cost per trial grows with "
                 "the trial count (benchmarks/search_growth.py)")
_SHELTER_BREAKS = ("a SIGTERM to the command's process group kills Ray's GCS before the driver "
                   "saves its state (exit 1, nothing saved)")
_RUNNING_BREAKS = ("--resume leaves the trials a killed driver had asked RUNNING in the study "
                   "forever")
_STORE_BREAKS = ("two commands starting on a new SQLite store race to create its schema, and "
                 "one of them fails")
_ASHA_BREAKS = ("--resume replays no results into the rungs (configurations cut at a rung "
                "run on), and rungs of several objectives cannot rank")

NAMES: tuple[Private, ...] = (
    # --- Ray Tune: ASHA (run/scheduler.py) ---
    Private("ray", "ray.tune.schedulers.async_hyperband", "_Bracket",
            "ParetoBracket is Tune's ASHA bracket (rungs, milestones, bookkeeping) with a cut "
            "by Pareto rank (`bracket_class`)",
            "run/scheduler.py does not import: no search starts"),
    Private("ray", _BRACKET, "_rungs", "ParetoBracket.on_result walks the rungs as Tune's does",
            "searches with several objectives", _SCHEDULER),
    Private("ray", _ASHA, "_brackets", "ResumableASHA makes Tune's brackets Pareto ones",
            "searches with several objectives", _SCHEDULER),
    Private("ray", _ASHA, "_trial_info", "the bracket of each trial: results replayed into it "
            "after a restore, and points of several objectives given to it", _ASHA_BREAKS,
            _SCHEDULER),
    Private("ray", _ASHA, "_metric", "the rung metric a result is read by", _ASHA_BREAKS,
            _SCHEDULER),
    Private("ray", _ASHA, "_metric_op", "the sign of the mode, as Tune's own reward",
            _ASHA_BREAKS, _SCHEDULER),
    Private("ray", _ASHA, "_time_attr", "the epoch a result is at", _ASHA_BREAKS, _SCHEDULER),
    Private("ray", _ASHA, "_max_t", "Tune's rule of the last epoch (several objectives)",
            "searches with several objectives", _SCHEDULER),
    Private("ray", _ASHA, "_stop_last_trials", "Tune's rule of the last epoch (several "
            "objectives)", "searches with several objectives", _SCHEDULER),
    Private("ray", _ASHA, "_num_stopped", "Tune's count of stopped trials kept as Tune keeps it",
            "searches with several objectives", _SCHEDULER),
    # --- Ray Tune: OptunaSearch (run/searcher.py, results/warm_start.py) ---
    Private("ray", _OPTUNA_SEARCH, "_ot_study", "telling a trial PRUNED, failing the trials a "
            "restored search will not tell, adding warm-start trials (`searcher_study`)",
            _PRUNED_BREAKS, _SEARCHER),
    Private("ray", _OPTUNA_SEARCH, "_ot_trials", "the Optuna trial of a Tune trial (PRUNED, "
            "ids linked, the last epoch reported)", _PRUNED_BREAKS, _SEARCHER),
    Private("ray", _OPTUNA_SEARCH, "_completed_trials", "the trials already told",
            _PRUNED_BREAKS, _SEARCHER),
    Private("ray", _OPTUNA_SEARCH, "_storage", "whether the study has a storage to link Tune "
            "and MLflow ids in and to clean up after a restore",
            _RUNNING_BREAKS + "; no Tune or MLflow ids in the study", _SEARCHER),
    # --- Ray Tune: experiment-state saves (run/state_saves.py) ---
    Private("ray", "ray.tune.execution.experiment_state", "_ExperimentCheckpointManager",
            "its save is wrapped to stretch the save period once saves get slow "
            "(`checkpoint_manager`)", _SAVES_BREAKS),
    Private("ray", _MANAGER, "sync_up_experiment_state", "the save that is wrapped (a public "
            "name of the private class)", _SAVES_BREAKS, ("gunn_search/run/state_saves.py",)),
    Private("ray", _MANAGER, "_checkpoint_period", "the period, read and stretched",
            _SAVES_BREAKS),
    Private("ray", _MANAGER, "_auto_checkpoint_enabled", "Tune's own 'auto' period is left "
            "alone", _SAVES_BREAKS),
    # --- Ray Train storage, Ray's process start (run/state_saves.py, run/interrupts.py) ---
    Private("ray", "ray.train._internal.storage", "_upload_to_fs_path",
            "Tune's state copied to a local storage path file by file atomically "
            "(`upload_to_fs_path`)", "a disk that fills during a save leaves a truncated "
            "experiment state, and --resume fails on it", commands=(SEARCH, ABLATE)),
    Private("ray", "ray._private.services", "ConsolePopen", "Ray's node processes started in a "
            "session of their own (`console_popen`)", _SHELTER_BREAKS, commands=(SEARCH, ABLATE)),
    Private("ray", "ray._private.utils", "detect_fate_sharing_support", "only where Ray's "
            "processes still die with the driver (`fate_sharing_supported`)",
            _SHELTER_BREAKS, commands=(SEARCH, ABLATE)),
    # --- Optuna (run/study.py, results/importances.py, results/warm_start.py) ---
    Private("optuna", "optuna.study:Study", "_storage", "ending another process's RUNNING trial "
            "(Optuna has no public way; `study_storage`)", _RUNNING_BREAKS),
    Private("optuna", "optuna.trial:FrozenTrial", "_trial_id", "the storage's id of that trial "
            "(`storage_trial_id`)", _RUNNING_BREAKS),
    Private("optuna", "optuna.distributions:BaseDistribution", "_contains",
            "whether an earlier trial's value lies in a distribution (step, bounds; "
            "`distribution_contains`)", "--warm-start and the parameter importances"),
    # --- MLflow (track/store.py) ---
    Private("mlflow", "mlflow.store.db.utils", "_initialize_tables", "a new SQLite store's "
            "schema built in a file of its own, then linked into place (`initialize_tables`)",
            _STORE_BREAKS, commands=(SEARCH, ABLATE)),
    Private("mlflow", "mlflow.store.db.utils", "_get_latest_schema_revision", "the schema "
            "revision a complete store has (`latest_schema_revision`)",
            _STORE_BREAKS, commands=(SEARCH, ABLATE)),
)


# --- Inspection ---------------------------------------------------------------------------------

def _resolve(owner: str):
    """The module, or class ("module:Class"), `owner` names; ImportError/AttributeError if gone."""
    module, _, cls = owner.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, cls) if cls else obj


@functools.lru_cache(maxsize=None)
def _stores(code: types.CodeType) -> frozenset[str]:
    """The attribute names `code` (and the functions defined in it) set or delete."""
    names = {i.argval for i in dis.get_instructions(code)
             if i.opname in ("STORE_ATTR", "DELETE_ATTR")}
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _stores(c)
    return frozenset(names)


def stored_attributes(cls: type) -> frozenset[str]:
    """The instance attributes the methods of `cls` and its bases set (`self.x = ...`)."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        for value in vars(klass).values():
            fn = value.fset if isinstance(value, property) else getattr(value, "__func__", value)
            code = getattr(fn, "__code__", None)  # functions, classmethods, staticmethods
            if isinstance(code, types.CodeType):
                names |= _stores(code)
    return frozenset(names)


def present(p: Private) -> bool:
    """Whether the installed library still has `p`."""
    try:
        owner = _resolve(p.owner)
    except (ImportError, AttributeError):
        return False
    if hasattr(owner, p.name):
        return True
    return isinstance(owner, type) and p.name in stored_attributes(owner)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def problem(p: Private) -> str:
    """The one line for a private name that is gone."""
    return (f"{p.package} {version(p.package)} has no {p.dotted}, a private name gunn-search "
            f"needs (tested with {REQUIREMENT[p.package]}{TESTED[p.package]}; without it "
            f"{p.breaks}): install a tested version")


def check(command: str = SEARCH) -> None:
    """Raise SearchError (one line) for the first private name `command` needs that the
    installed libraries no longer have."""
    for p in NAMES:
        if command in p.commands and not present(p):
            raise SearchError(problem(p))


def _need(p_owner: str, name: str):
    """The private name itself, or SearchError if it is gone."""
    for p in NAMES:
        if p.owner == p_owner and p.name == name:
            if not present(p):
                raise SearchError(problem(p))
            return getattr(_resolve(p.owner), name)
    raise KeyError(f"{p_owner}.{name} is not declared in NAMES")


# --- The names, for the rest of the code ---------------------------------------------------------

class MissingBracket:
    """Stands in for Tune's `_Bracket` where it is gone, so that run/scheduler.py still imports
    (`check` has said what is missing before a search builds one)."""

    def __init__(self, *args, **kwargs):
        _need("ray.tune.schedulers.async_hyperband", "_Bracket")


def bracket_class() -> type:
    """Tune's ASHA bracket class (`_Bracket`), or `MissingBracket`."""
    from ray.tune.schedulers import async_hyperband

    return getattr(async_hyperband, "_Bracket", MissingBracket)


def checkpoint_manager() -> type | None:
    """Tune's `_ExperimentCheckpointManager` when it and the attributes wrapped are there."""
    mine = [p for p in NAMES if p.owner == _MANAGER]
    try:
        from ray.tune.execution import experiment_state
    except ImportError:
        return None
    cls = getattr(experiment_state, "_ExperimentCheckpointManager", None)
    if cls is None or not all(hasattr(cls, p.name) or p.name in stored_attributes(cls)
                              for p in mine):
        return None
    return cls


def checkpoint_period(manager) -> float:
    return manager._checkpoint_period


def set_checkpoint_period(manager, seconds: float) -> None:
    manager._checkpoint_period = seconds


def auto_checkpoint(manager) -> bool:
    """Whether Tune adapts the period itself (TUNE_GLOBAL_CHECKPOINT_S=auto)."""
    return manager._auto_checkpoint_enabled


def upload_to_fs_path():
    """Ray Train's `_upload_to_fs_path` as it is now (maybe our wrapper), or None."""
    try:
        from ray.train._internal import storage
    except ImportError:
        return None
    return getattr(storage, "_upload_to_fs_path", None)


def set_upload_to_fs_path(fn) -> None:
    from ray.train._internal import storage

    storage._upload_to_fs_path = fn


def console_popen():
    """Ray's `ray._private.services.ConsolePopen` (looked up by name when Ray starts a
    process), or None."""
    from ray._private import services

    return getattr(services, "ConsolePopen", None)


def set_console_popen(cls) -> None:
    from ray._private import services

    services.ConsolePopen = cls


def fate_sharing_supported() -> bool:
    """Whether Ray's processes die with the driver here (PR_SET_PDEATHSIG)."""
    from ray._private import utils

    return bool(utils.detect_fate_sharing_support())


def searcher_study(searcher):
    """The Optuna study of Ray's OptunaSearch."""
    return searcher._ot_study


def study_storage(study):
    """The storage of an Optuna study."""
    return study._storage


def storage_trial_id(frozen_trial) -> int:
    """The storage's id of an Optuna trial (what the storage's methods take)."""
    return frozen_trial._trial_id


def distribution_contains(distribution, value) -> bool:
    """Whether `value` (as a trial's params hold it) lies in an Optuna distribution."""
    return bool(distribution._contains(distribution.to_internal_repr(value)))


def initialize_tables(engine) -> None:
    """MLflow's schema created on `engine` (SQLAlchemy)."""
    _need("mlflow.store.db.utils", "_initialize_tables")(engine)


def latest_schema_revision() -> str:
    """The schema revision this MLflow creates and expects."""
    return _need("mlflow.store.db.utils", "_get_latest_schema_revision")()
