"""Where the MLflow store is, checked before MLflow is imported (a bad flag is reported in well
under a second), and MLflow's own notes kept off the terminal. Shared by gunn-search and gunn-train.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainers.errors import first_line

from gunn_search.errors import UsageError

DEFAULT_STORE = "mlflow.db"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


def tracking_uri(given: str | None) -> str:
    """The tracking URI a command uses (the default when none is given), checked."""
    uri = given or default_tracking_uri()
    check_tracking_uri(uri)
    return uri


def check_store_exists(uri: str) -> None:
    """A command that reads a search's results needs its local store to exist."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise UsageError(f"no MLflow store at {uri[len('sqlite:///'):]} (run a search first, "
                         "or pass --tracking-uri)")


def quiet_libraries() -> None:
    """Keep MLflow's and alembic's INFO notes (store creation, migrations) off the terminal."""
    import logging
    # MLflow sets its loggers' level from this variable when it is imported, overriding a level
    # set before; the loop below covers an MLflow that is already imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # export's download
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs every failed write to a SQL store with its traceback (~60 lines for a full disk);
    # tracking.BufferedClient says a write failed in one line and retries it.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def check_tracking_uri(uri: str) -> None:
    """UsageError (one line) for a tracking URI no MLflow store can be at."""
    from urllib.parse import urlparse
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        if not urlparse(uri).hostname:
            raise UsageError(f"--tracking-uri {uri!r}: no host in the URL")
        # Bound how long one call can block on a server that is down (default: minutes).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        check_login(uri)
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise UsageError(f"--tracking-uri {uri!r}: expected sqlite:///PATH")
    elif scheme.split("+")[0] in DATABASES:  # postgresql+psycopg://...: MLflow's SQL store
        check_database(uri, "--tracking-uri")
    elif scheme not in ("file", "databricks"):
        raise UsageError(f"--tracking-uri {shown_uri(uri)!r}: unsupported scheme "
                         f"{scheme or '(none)'!r}; use http(s)://HOST:PORT, sqlite:///PATH or "
                         "file:///PATH")


DATABASES = ("postgresql", "mysql", "mssql")
CONNECT_TIMEOUT_S = 10  # a database host that drops packets: one line in 10 s, not minutes


def connect_args(url: str) -> dict:
    """The driver's connection arguments a store opened at `url` gets: a bounded connect time
    (libpq and MySQL wait for the OS's TCP timeout by default)."""
    scheme = url.split(":", 1)[0]
    return {"connect_timeout": CONNECT_TIMEOUT_S} if scheme.split("+")[0] in DATABASES[:2] else {}


def check_database(url: str, flag: str) -> None:
    """UsageError (one line, password masked) when the database at `url` cannot be logged into:
    down, unreachable, a wrong password, no driver installed. Run before Ray or MLflow start."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args(url),
                                          poolclass=sqlalchemy.pool.NullPool)
        with engine.connect():
            pass
    except Exception as e:  # ArgumentError, OperationalError, ModuleNotFoundError, ...
        raise UsageError(f"{flag} {shown_uri(url)}: cannot connect ({database_error(e)})") from None


def database_error(e: Exception) -> str:
    """A database error's first line, the driver's own words, with the fix where it is a
    missing driver."""
    first = first_line(e)
    if isinstance(e, ModuleNotFoundError) and e.name in ("psycopg", "psycopg2"):
        return f"{first}; pip install 'gunn-search[postgres]'"
    if first.startswith("(") and ") " in first:  # "(psycopg.OperationalError) connection ..."
        first = first.split(") ", 1)[1]
    return first.removeprefix("connection failed: ")


USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def check_login(uri: str, timeout: float = 10.0) -> None:
    """UsageError (one line, naming the server) when a tracking server behind a login refuses
    this process: no credentials, or wrong ones. The credentials are MLflow's own variables
    (MLFLOW_TRACKING_USERNAME / _PASSWORD; MLflow's client sends them on every call); they are
    never printed. A server that does not answer is left to the commands' own handling (a
    search buffers its writes while the store is down), so only a refusal stops here, before
    Ray or MLflow start."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    parts = urlparse(uri)
    if parts.username or parts.password:
        raise UsageError(f"--tracking-uri {shown_uri(uri)}: put the login in {USER_ENV} and "
                         f"{PASSWORD_ENV}, not in the URL (it would be logged)")
    request = urllib.request.Request(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user or password:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as e:
        code = e.code
        if code == 401:
            why = (f"refused the login in {USER_ENV}/{PASSWORD_ENV}" if user or password else
                   f"needs a login: set {USER_ENV} and {PASSWORD_ENV}")
        elif code == 403:
            why = f"refused user {user!r} (no permission to read experiments)"
        else:
            return  # not a login problem: the commands report it in their own words
    except (OSError, ValueError):
        return
    raise UsageError(f"tracking server {uri}: {why} (HTTP {code})")


def shown_uri(uri: str) -> str:
    """`uri` with any password in it masked."""
    from urllib.parse import urlparse

    parts = urlparse(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)
