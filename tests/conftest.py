import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

# The suite runs on 2 CPU cores; keep torch from oversubscribing them.
torch.set_num_threads(2)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def pytest_addoption(parser):
    parser.addoption("--skip-cluster", action="store_true",
                     help="skip tests that start multi-process Ray clusters or servers")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--skip-cluster"):
        skip = pytest.mark.skip(reason="--skip-cluster given")
        for item in items:
            if "cluster" in item.keywords:
                item.add_marker(skip)
    if not torch.cuda.is_available():
        # By marker, not keyword: a test parametrized with the id "cuda" is not a GPU test.
        skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip_cuda)


@pytest.fixture(autouse=True, scope="module")
def no_ray_left_behind():
    """Each module starts with no Ray in this process: one that a module's code left running
    (Tuner.fit() starts one and keeps it) would make the next module's ray.init() fail."""
    yield
    ray = sys.modules.get("ray")  # only a module that imported Ray can have started it
    if ray is not None and ray.is_initialized():
        ray.shutdown()


# --- helpers for the tests that start servers (`from tests.conftest import ...`) ----------------

BIN = Path(sys.executable).parent


def run_cli(args, cwd, timeout=900, env=None) -> subprocess.CompletedProcess:
    """One of the project's console scripts (`gunn-search`, `gunn-train`) run as a user would;
    `env` adds to the environment."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 3000) -> str:
    """The last `n` characters of a log file ("" if it cannot be read)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store (`root/server.db`; or `backend`, any
    SQLAlchemy URL) and a local artifact root (`root/artifacts`), in its own process group,
    logging to `root/mlflow-server.log`.

    `start()` returns at once (the server needs 6-11 s); `wait_ready()` waits for /health.
    `stop()` kills it; `start()` again brings it back on the same port and store.
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None, port: int | None = None,
                 backend: str | None = None):
        self.root = Path(root)
        self.backend = backend or f"sqlite:///{self.root / 'server.db'}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.artifacts = self.root / "artifacts"
        self.log = self.root / "mlflow-server.log"
        self.env = env if env is not None else {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MlflowServer":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", self.backend,
                 "--default-artifact-root", str(self.artifacts), "--workers", "1"],
                cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 150.0) -> None:
        """Wait until /health answers; fail with the log's tail if the server exits or is late."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                pytest.fail(f"mlflow server at {self.url} exited with {code}\n{tail(self.log)}")
            time.sleep(0.5)
        pytest.fail(f"mlflow server at {self.url}: not ready after {timeout:.0f} s\n{tail(self.log)}")

    def stop(self, grace: float = 0.0) -> None:
        """SIGTERM and up to `grace` seconds to exit (none: an abrupt outage), then SIGKILL the
        process group."""
        proc, self.proc = self.proc, None
        if proc is not None:
            kill_group(proc, grace, wait=30)


def kill_group(proc: subprocess.Popen, grace: float, wait: float = 10) -> None:
    """With a grace period, SIGTERM the process first (its own handler stops what it started);
    then SIGKILL its process group and reap it."""
    if grace and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m"):
    """A tmpfs of `size` mounted at `path` for the test (root only): a disk that really fills.
    Skips, with the reason, where the machine does not allow mounting one."""
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs",
                          str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: "
                    f"{(res.stderr.strip() or 'mount failed').splitlines()[0]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path, keep: int = 0) -> Path:
    """Fill the filesystem holding `path` with a file `path/.filler` until no byte is left but
    `keep`; returns the filler (delete it to free the space)."""
    filler = path / ".filler"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb") as f:
        try:
            while True:
                free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
                if free <= keep:
                    break
                f.write(chunk[:max(1, min(len(chunk), free - keep))])
                f.flush()
        except OSError:
            pass
    return filler
