"""A throwaway PostgreSQL server for the tests that need one, from the installed binaries.

Written here rather than taken from pytest-postgresql: its process fixture runs `pg_ctl` as the
current user, and CI (and this machine) run the suite as root, which `initdb` and `postgres`
refuse. So the cluster is made and run as an unprivileged user (`postgres`, which Debian's
package creates, else `nobody`) through `runuser`, in a temporary folder, listening on
127.0.0.1 only, with password logins (scram-sha-256) so a wrong password is really refused.

Where the binaries are missing the tests skip, except under CI=true, where they fail: `.ci/run`
installs Debian's `postgresql`, so a missing server there is a broken CI, not a choice.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, tail

USER, PASSWORD = "gunn", "s3cret-pw"


def bindir() -> Path | None:
    """The folder of `initdb`, `pg_ctl` and `postgres`: on PATH, else Debian's versioned one."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name))
    return Path(versions[-1]).parent if versions else None


def require_binaries() -> Path:
    """The binaries' folder, or skip (fail under CI=true) saying what is missing."""
    found = bindir()
    if found is None:
        why = "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; .ci/run installs Debian's postgresql")
        pytest.skip(why)
    return found


def _runner() -> list[str]:
    """How to run a command as a user the server accepts: as is, unless we are root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
        except KeyError:
            continue
    pytest.skip("running as root with no unprivileged user to run PostgreSQL as")


class PostgresServer:
    """`initdb` + `pg_ctl start` in a folder of its own, as an unprivileged user; `url(db)` gives an
    SQLAlchemy URL for user `gunn` (psycopg 3 driver); `create_database` makes one."""

    def __init__(self):
        self.bin = require_binaries()
        self.run_as = _runner()
        # Its own folder right under /tmp: pytest's tmp_path lies in a root-only folder, which
        # the server's user could not enter.
        self.root = Path(tempfile.mkdtemp(prefix="gunn-pg-"))
        self.data = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.port = free_port()

    def _as_owner(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, *cmd], capture_output=True, text=True, **kw)

    def start(self) -> "PostgresServer":
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.run_as:  # the server's user owns its folder (and reads the password file)
            owner = pwd.getpwnam(self.run_as[2])
            for p in (self.root, pwfile):
                os.chown(p, owner.pw_uid, owner.pw_gid)
            self.root.chmod(0o700)
        res = self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                             "--pwfile", str(pwfile), "--auth", "scram-sha-256",
                             "--encoding", "UTF8", "--no-sync")
        if res.returncode != 0:
            pytest.fail(f"initdb failed: {res.stderr.strip()[-2000:]}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
                " -c fsync=off -c max_connections=200")
        res = self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                             "-o", opts, "-w", "-t", "60", "start", timeout=90)
        if res.returncode != 0:
            pytest.fail(f"pg_ctl start failed: {res.stderr.strip()}\n{tail(self.log)}")
        return self

    def url(self, db: str = "postgres", password: str = PASSWORD, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://{USER}:{password}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A new database `name`; its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop",
                       timeout=60)
        deadline = time.monotonic() + 10
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
