"""Where the MLflow store is, checked before MLflow is imported (a bad flag is reported in well
under a second), and MLflow's own notes kept off the terminal. Shared by gunn-search and gunn-train.
"""

from __future__ import annotations

import os
from pathlib import Path

from gunn_search.errors import UsageError

DEFAULT_STORE = "mlflow.db"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


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
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise UsageError(f"--tracking-uri {uri!r}: expected sqlite:///PATH")
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql"):
        raise UsageError(f"--tracking-uri {uri!r}: unsupported scheme {scheme or '(none)'!r}; "
                         "use http(s)://HOST:PORT, sqlite:///PATH or file:///PATH")
