"""MLflow tracking of a search, from the driver only.

One experiment per space, one parent run per search, one nested child run per trial. Every
write goes through `MlflowClient` with explicit run ids from a Tune callback in the driver:
SQLite has one writer, and on a cluster only the driver must reach the tracking server.

Writes that fail (a tracking server that went away) are queued and retried before each later
write and once more at the end; whatever still could not be written is reported, never raised
into the search.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from trainers.errors import first_line
from trainers.metric_names import BRANCH_EPOCHS, annealed_key

from gunn_search.track import ui
# The run tags, defined in gunn_search.tags; callers that hold this module name them
# through it (tr.STATUS_TAG), so they are kept importable from here.
from gunn_search.tags import (PARENT_TAG, ROLE_TAG, SEARCH_TAG,  # noqa: F401
                              STATUS_TAG, TRIAL_TAG)

# Per-epoch metrics logged for each trial (anything else Tune adds is Ray's, not ours).
# At ASHA's rungs only: the annealing branch's result (trainers/anneal.py); what each epoch's
# branch cost (branch_epochs, 0 between rungs) is logged every epoch.
RUNG_METRICS = (annealed_key("val"), annealed_key("val", "loss"))
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds",
                 "images_per_s", "peak_memory_bytes", "num_threads",  # num_threads: CPU only
                 BRANCH_EPOCHS) + RUNG_METRICS


def local_store_uri(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def is_local_uri(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def get_or_create_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The experiment's id, created if new. It is tagged for the MLflow UI as model training
    with val_acc as its primary metric (gunn_search.track.ui); an existing experiment gets
    the tags it lacks (one a person changed in the UI is kept)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        for k, v in ui.EXPERIMENT_TAGS.items():
            if k not in exp.tags:
                client.set_experiment_tag(exp.experiment_id, k, v)
        return exp.experiment_id
    location = (artifact_root / name).resolve().as_uri() if artifact_root else None
    return client.create_experiment(name, artifact_location=location, tags=ui.EXPERIMENT_TAGS)


# --- Opening a store that another client may be creating at the same moment -------------------
# MLflow builds a new SQLite store's schema with about 70 alembic migrations, whose DDL SQLite
# commits statement by statement. Two clients migrating one file at once (a search and the
# `mlflow ui` started beside it) break each other ("duplicate column name", "Online migration
# expected to match one row ... 'alembic_version'", "Circular dependency detected") and can leave
# the schema half-made. So a new store's schema is built in a private file and linked into
# place only if no other client created the store meanwhile (a link never replaces a file),
# and a store another client is migrating is waited for until its schema is complete.


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` store; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path, _, query = uri[len("sqlite:///"):].partition("?")
    if not path or path == ":memory:" or "uri=true" in query:
        return None
    return Path(path).resolve()


def open_store(uri: str, timeout: float = 60.0, quiet: float = 5.0) -> MlflowClient:
    """`MlflowClient(uri)` with the store's schema complete, even if another client (an
    `mlflow ui`, a notebook, another search) creates the same SQLite store in the same seconds.

    While the store's schema is behind MLflow's head revision and its file keeps changing,
    another client is migrating it: wait (a client whose file has not changed for `quiet`
    seconds is taken for dead and its migration continued). An open that fails while the store
    was still being migrated is retried until `timeout`; any other failure is raised at once.
    """
    db = sqlite_file(uri)
    if db is None:
        return MlflowClient(uri)
    deadline = time.monotonic() + timeout
    with _store_lock(db):
        try:
            ours = not db.exists() and _create_aside(db)
        except Exception:  # alembic keeps its state per process: a client in this process
            ours = False   # migrating at the same moment breaks ours; wait for it below
        tries = 0
        while True:
            if not ours:
                _settle(db, deadline, quiet)
            before = _schema_revision(db)
            started = time.time()
            tries += 1
            try:
                client = MlflowClient(uri)
                # MLflow opens (and creates or migrates) the store on first use, not in the
                # constructor: use it here, where a failure can be waited out.
                client.search_experiments(max_results=1)
                return client
            except Exception:
                # A store that was complete and fails to open fails for a reason of its own; one
                # that another client moved on (or finished) meanwhile is tried again; so are the
                # first few failures of any kind. (Two threads of one process creating one new
                # store at once can leave it half-migrated: alembic's state is per process.)
                raced = tries < 4 and time.monotonic() < deadline
                if not raced and (ours or before == _head_revision()
                                  or time.monotonic() >= deadline or not (
                                      _schema_revision(db) == _head_revision()
                                      or _changed_at(db) >= started)):
                    raise
            ours = False
            time.sleep(0.5)


@contextlib.contextmanager
def _store_lock(db: Path):
    """Serialise our own processes' opening of one store (best effort: without the lock file,
    the opening goes on unlocked)."""
    import fcntl
    name = hashlib.sha1(str(db).encode()).hexdigest()[:16]
    try:
        f = open(Path(tempfile.gettempdir()) / f"gunn-search-store-{name}.lock", "a")
    except OSError:
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _create_aside(db: Path) -> bool:
    """Build the schema in a private file beside `db` and link it to `db`; False if another
    client created `db` first (or the file could not be built: MLflow then says why)."""
    from mlflow.store.db.utils import create_sqlalchemy_engine

    from gunn_search.private_names import initialize_tables

    tmp = str(db.with_name(f".{db.name}.{uuid.uuid4().hex[:12]}.new"))
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # mode as MLflow's
    except OSError:
        return False
    try:
        engine = create_sqlalchemy_engine(f"sqlite:///{tmp}")
        try:
            initialize_tables(engine)
        finally:
            engine.dispose()
        os.link(tmp, db)
        return True
    except FileExistsError:
        return False
    finally:
        for p in (tmp, tmp + "-journal"):
            with contextlib.suppress(OSError):
                os.unlink(p)


@functools.lru_cache(maxsize=1)
def _head_revision() -> str:
    """The schema revision this MLflow creates and expects."""
    from gunn_search.private_names import latest_schema_revision
    return latest_schema_revision()


def _schema_revision(db: Path) -> str | None:
    """The store's alembic revision; None while it has none or cannot be read (locked)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True,
                                                timeout=0.5)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _changed_at(db: Path) -> float:
    """When the store's file (or its journal) last changed; 0 if there is none."""
    times = [0.0]
    for p in (db, Path(f"{db}-journal"), Path(f"{db}-wal")):
        with contextlib.suppress(OSError):
            times.append(p.stat().st_mtime)
    return max(times)


def _settle(db: Path, deadline: float, quiet: float) -> None:
    """Wait while another client migrates the store: until its schema reaches the head
    revision, its file has not changed for `quiet` seconds, or the deadline."""
    while time.monotonic() < deadline:
        if time.time() - _changed_at(db) >= quiet or _schema_revision(db) == _head_revision():
            return
        time.sleep(0.1)


@dataclass
class BufferedClient:
    """MlflowClient calls that survive a tracking server outage: queued and retried in order."""

    client: MlflowClient
    pending: list[tuple[str, tuple, dict]] = field(default_factory=list)
    warned: bool = False
    retry_every: float = 5.0  # seconds between retries while the store is unreachable
    next_retry: float = 0.0
    aliases: dict[str, str | None] = field(default_factory=dict)
    # Seconds spent inside MLflow calls and their count (two perf_counter reads a call): what
    # tracking costs the driver, reported by `gunn-search` under GUNN_SEARCH_TIMING=1.
    busy_s: float = 0.0
    calls: int = 0

    def call(self, method: str, *args, **kwargs) -> Any:
        """Run one client call; on failure queue it (and everything after it, to keep order)."""
        if self.pending and time.monotonic() >= self.next_retry:
            self.flush()
        if self.pending:
            self.pending.append((method, args, kwargs))
            return None
        try:
            return self._invoke(method, args, kwargs)
        except (MlflowException, OSError) as e:
            self.pending.append((method, args, kwargs))
            self.next_retry = time.monotonic() + self.retry_every
            if not self.warned:
                first = first_line(e)
                print(f"gunn-search: MLflow write failed ({first[:160]}); buffering and "
                      "retrying, training goes on", file=sys.stderr, flush=True)
                self.warned = True
            return None

    def create_run(self, experiment_id: str, **kwargs) -> str:
        """A run id, or while the store is unreachable a placeholder that later calls may use:
        it is replaced by the real id when the queued create_run goes through."""
        alias = f"pending-run-{len(self.aliases)}"
        self.aliases[alias] = None
        run = self.call("create_run", experiment_id, _alias=alias, **kwargs)
        return run.info.run_id if run is not None else alias

    def resolve(self, run_id: str) -> str:
        return self.aliases.get(run_id) or run_id

    def known(self, run_id: str) -> str | None:
        """The real id of `run_id`; None while it is a placeholder the store has not replaced."""
        real = self.resolve(run_id)
        return None if real in self.aliases else real

    def _invoke(self, method: str, args: tuple, kwargs: dict) -> Any:
        kwargs = dict(kwargs)
        alias = kwargs.pop("_alias", None)
        args = tuple(self.resolve(a) if isinstance(a, str) else a for a in args)
        t0 = time.perf_counter()
        try:
            result = getattr(self.client, method)(*args, **kwargs)
        finally:
            self.busy_s += time.perf_counter() - t0
            self.calls += 1
        if alias is not None:
            self.aliases[alias] = result.info.run_id
        return result

    def flush(self) -> None:
        """Deliver queued writes in order; stop at the first that still fails."""
        while self.pending:
            method, args, kwargs = self.pending[0]
            try:
                self._invoke(method, args, kwargs)
            except (MlflowException, OSError):
                self.next_retry = time.monotonic() + self.retry_every
                return
            self.pending.pop(0)
        if self.warned:
            print("gunn-search: MLflow reachable again; buffered writes delivered",
                  file=sys.stderr, flush=True)
            self.warned = False


def config_params(cfg) -> dict[str, str]:
    """The MLflow params of a training config: its dotted paths (`model.stages.0.N`, `optim.lr`)
    and values, the same for a search trial and for `gunn-train` of its exported config."""
    out: dict[str, str] = {}

    def walk(prefix: str, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, x in enumerate(v):
                walk(f"{prefix}.{i}", x)
        elif v is not None:
            out[prefix] = str(v)

    walk("", cfg.model_dump(mode="json", exclude={"tracking"}))
    return out


def trial_error_line(trial) -> str:
    """The line worth showing of a Tune trial's error (its error file), or "unknown error"."""
    path = getattr(trial, "error_file", None)
    try:
        if path and Path(path).exists():
            return shown_line(Path(path).read_text())
    except OSError:
        pass
    return "unknown error"


def shown_line(text: str) -> str:
    """The line worth showing of an error's text, at most 250 characters: a Python traceback's
    closing "ErrorType: message" line, else the last line (a message's first line:
    `trainers.errors.first_line`)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    # A Python traceback ends with "ErrorType: message"; that is the line worth showing.
    for ln in reversed(lines):
        if not ln.startswith(("File ", "^", "~", "Traceback")) and ":" in ln:
            return ln[:250]
    return (lines[-1] if lines else "unknown error")[:250]


def finite_metrics(result: dict, keys=EPOCH_METRICS) -> dict[str, float]:
    out = {}
    for k in keys:
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


def batch(client: BufferedClient, run_id: str, metrics: dict | None = None, step: int = 0,
          params: dict | None = None, tags: dict | None = None) -> None:
    now = int(time.time() * 1000)
    params = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    # One call: MlflowClient.log_batch splits what is over the store's limit of 100 params or
    # tags a request itself (TrackingServiceClient.log_batch, chunk_list).
    client.call("log_batch", run_id,
                metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
                params=params, tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str,
               trial_id: str | None = None) -> dict[str, str]:
    """trial_id -> run_id of the existing children of a parent run (used when resuming), or of
    the one child of `trial_id`: a search's end asks for the best trial's run only, since
    reading every run back (params, metrics, tags) took 1.4 s at 384 trials."""
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if trial_id is not None:
        query += f" and tags.`{TRIAL_TAG}` = '{trial_id}'"
    runs = client.search_runs([experiment_id], query, max_results=10000)
    return {r.data.tags[TRIAL_TAG]: r.info.run_id for r in runs if TRIAL_TAG in r.data.tags}
