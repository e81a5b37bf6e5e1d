"""A second MLflow client creating the same new SQLite store in the same seconds as a search (the
`mlflow ui` a user starts beside it, a notebook's MlflowClient): the search waits for the other's
schema migration and goes on, and the store ends with a complete schema.

Without `tracking.open_store` one of the two clients failed in every round here (34 of 34; the
search in 8 of the 23 where it was noted which): "duplicate column name: step", "table runs
already exists", "Online migration expected to match one row when updating ... in
'alembic_version'; 0 found".
"""

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from gunn_search.track import store as tr

pytestmark = pytest.mark.slow  # each test creates an MLflow schema or two: 2-10 s

# The other client: MLflow imported, then waits for a line on stdin to open the store at once.
OTHER = """
import sys
from mlflow.tracking import MlflowClient
import mlflow.store.tracking.sqlalchemy_store
print("ready", flush=True)
sys.stdin.readline()
MlflowClient(sys.argv[1]).search_experiments()
"""


def start_other(uri: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", OTHER, uri], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.communicate()[1][-2000:]
    return p


def release(p: subprocess.Popen) -> None:
    p.stdin.write("\n")
    p.stdin.flush()


def assert_complete_schema(uri: str) -> None:
    from mlflow.store.db.utils import (_all_tables_exist, _get_latest_schema_revision,
                                       _get_schema_version, create_sqlalchemy_engine)
    engine = create_sqlalchemy_engine(uri)
    try:
        assert _all_tables_exist(engine)
        assert _get_schema_version(engine) == _get_latest_schema_revision()
    finally:
        engine.dispose()


def test_a_new_store_is_built_aside_and_linked(tmp_path):
    db = tmp_path / "sub" / "mlflow.db"
    client = tr.open_store(f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert_complete_schema(f"sqlite:///{db}")
    assert [p.name for p in db.parent.iterdir()] == ["mlflow.db"]  # no private file left
    mask = os.umask(0)
    os.umask(mask)
    assert db.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_store_behind_mlflow_that_nobody_migrates_fails_at_once(tmp_path):
    from mlflow.exceptions import MlflowException

    db = tmp_path / "mlflow.db"
    tr.open_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as con:  # a store an older MLflow made
        con.execute("UPDATE alembic_version SET version_num = 'a8c4a736bde6'")
    os.utime(db, (time.time() - 60, time.time() - 60))
    started = time.monotonic()
    with pytest.raises(MlflowException, match="out-of-date database schema"):
        tr.open_store(f"sqlite:///{tmp_path}/./mlflow.db")  # another URI: MLflow caches stores
    assert time.monotonic() - started < 5


def test_a_migration_whose_client_died_is_continued(tmp_path):
    from mlflow.store.db.utils import create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    db = tmp_path / "mlflow.db"
    engine = create_sqlalchemy_engine(f"sqlite:///{db}")
    # A client that died after the first of the initial tables (MLflow's first step).
    InitialBase.metadata.tables["experiments"].create(engine)
    engine.dispose()
    started = time.monotonic()
    tr.open_store(f"sqlite:///{db}", quiet=1.0)
    assert time.monotonic() - started >= 1.0  # waited for that client first
    assert_complete_schema(f"sqlite:///{db}")


# Seconds the other client starts before ours (negative: after ours): at once, and either first
# by less than a migration takes (1.5-10 s here).
@pytest.mark.parametrize("lead", [0.0, 0.0, 0.3, -0.3, -1.0])
def test_search_opens_a_store_another_client_is_creating(tmp_path, lead):
    from mlflow.tracking import MlflowClient  # noqa: F401  (imported before the race, as there)

    from gunn_search.run.search import SearchOptions, open_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opts = SearchOptions(space_path="smoke.yaml", experiment="race", tracking_uri=uri,
                         storage=str(tmp_path / "runs"), artifact_root=str(tmp_path / "art"))
    other = start_other(uri)
    timer = None
    try:
        if lead >= 0:
            release(other)
            time.sleep(lead)
        else:
            timer = threading.Timer(-lead, release, (other,))
            timer.start()
        started = time.monotonic()
        client, exp_id = open_experiment(opts)
        took = time.monotonic() - started
        if timer is not None:
            timer.join()
        _, err = other.communicate(timeout=120)
    finally:
        if timer is not None:
            timer.join()
        if other.poll() is None:
            other.kill()
            other.wait()
    assert client.get_experiment(exp_id).name == "race"
    assert took < 60
    # The other client is never raced either: ours never migrates a store alongside it.
    assert other.returncode == 0, err[-3000:]
    assert_complete_schema(uri)
