"""What the benchmarks share: the real `gunn-search` CLI run and timed as a subprocess and what it
logged read back, a local MLflow tracking server, the machine's load, child processes that
answer with one RESULT line, Markdown tables, and the raw results written as JSON.

It measures nothing itself; each script's docstring says what it measured, on which machine, and
where its result is (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MB = 1e6


# --- the machine ----------------------------------------------------------------------------------

def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as the tables print them: "1.56 3.09 5.01"."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the real CLI ---------------------------------------------------------------------------------

def derive_space(dest: Path, name: str, **changes) -> Path:
    """smoke.yaml with nested changes (dict values are merged), validated with parse_space."""
    import copy

    from gunn_search.space import load_space, parse_space

    data = copy.deepcopy(load_space("smoke.yaml").data)
    data["name"] = name
    for key, val in changes.items():
        if isinstance(val, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **val}
        else:
            data[key] = val
    parse_space(data, name)  # the same validation the CLI applies
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def run_cli(space: Path, workdir: Path, tracking_uri: str, experiment: str,
            extra: list[str] | None = None, echo: bool = True) -> dict:
    """Run `gunn-search` as a subprocess; returns wall time, exit code, timestamped stderr."""
    env = dict(os.environ)
    # A bare ray.init() joins the cluster in /tmp/ray/ray_current_cluster when a `ray start`
    # left one behind (other people's tests on this machine); force a fresh local instance.
    env["RAY_ADDRESS"] = "local"
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    cmd = [str(BIN / "gunn-search"), "--space", str(space), "--tracking-uri", tracking_uri,
           "--storage", str(workdir / "runs"), "--experiment", experiment] + (extra or [])
    lines: list[tuple[float, str]] = []
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)

    def pump():
        for ln in proc.stderr:
            lines.append((time.time(), ln.rstrip("\n")))
            if echo and ln.startswith("gunn-search:"):
                print(f"  [{time.time() - t0:6.1f}s] {ln.rstrip()}", file=sys.stderr, flush=True)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    stdout = proc.stdout.read()
    rc = proc.wait()
    t1 = time.time()
    th.join(timeout=10)
    return {"t0": t0, "t1": t1, "wall": t1 - t0, "rc": rc, "stdout": stdout, "stderr": lines,
            "cmd": cmd}


def check_exit(res: dict) -> None:
    """Stop the benchmark with the end of gunn-search's stderr when it failed."""
    if res["rc"] != 0:
        tail = "\n".join(ln for _, ln in res["stderr"][-30:])
        raise SystemExit(f"gunn-search exited {res['rc']}:\n{tail}")


def search_runs(tracking_uri: str, experiment: str):
    """(client, parent run, [child runs]) of the (only) search in `experiment`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    parents = [r for r in runs if r.data.tags.get("gunn_search.role") == "search"]
    assert len(parents) == 1, f"expected one search run in {experiment}, got {len(parents)}"
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children


def tune_results(storage: Path) -> dict[str, list[dict]]:
    """trial_id -> the results Tune recorded for it (result.json of each trial directory)."""
    out: dict[str, list[dict]] = {}
    for f in storage.glob("*/result.json"):
        for ln in f.read_text().splitlines():
            if ln.strip():
                r = json.loads(ln)
                out.setdefault(r["trial_id"], []).append(r)
    return out


# --- a local MLflow tracking server ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path) -> tuple[subprocess.Popen, str, float]:
    """`mlflow server` on 127.0.0.1 with its store and artifacts in `work`: (process, URI,
    seconds until GET /health answered 200)."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    (work / "art").mkdir()
    log = open(work / "server.log", "w")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    t0 = time.time()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{work / 'srv.db'}",
         "--default-artifact-root", str(work / "art"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"mlflow server exited {proc.returncode}; see {work / 'server.log'}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.time() - t0 > 180:
            stop_server(proc)
            raise SystemExit("mlflow server not healthy after 180 s")
        time.sleep(0.5)
    return proc, uri, time.time() - t0


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the server's own process group (it was started in a new session), then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# --- child processes ------------------------------------------------------------------------------

RESULT = "RESULT "  # a measuring child's answer: this prefix, then its result as one JSON line


def print_result(result: dict) -> None:
    print(RESULT + json.dumps(result), flush=True)


def read_result(stdout: str) -> dict | None:
    """The last RESULT line a child printed, None when it printed none."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT)]
    return json.loads(lines[-1][len(RESULT):]) if lines else None


def first_error(text: str | None) -> str:
    """A failed child's error, one line: the last line of its stderr."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "failed")[:200]


def spawn_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """`workers` fresh interpreters (spawn: one torch thread each, no state inherited from this
    process). A ProcessPoolExecutor, not multiprocessing.Pool: it raises if a worker dies
    instead of waiting for its result forever."""
    ctx = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx)


# --- output ---------------------------------------------------------------------------------------

def megabytes(b: float | None, places: int = 1) -> str:
    """Bytes as MB (1e6), thousands separated; "–" for none."""
    return "–" if b is None else f"{b / MB:,.{places}f}"


def table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_head(names: list[str]) -> str:
    """A Markdown table's header line and its separator (every column left-aligned)."""
    return table_row(names) + "\n|" + "---|" * len(names)


def column_table(columns: list[str], rows: list[tuple[str, Callable[[dict], str]]],
                 results: list[dict]) -> str:
    """A Markdown table with one column per result: a row per (name, cell of a result)."""
    head = "| | " + " | ".join(columns) + " |"
    sep = "|---|" + "---:|" * len(results)
    body = ["| " + name + " | " + " | ".join(f(r) for r in results) + " |" for name, f in rows]
    return "\n".join([head, sep] + body)


def write_json(path: str | Path, obj) -> None:
    """The raw results, readable again by the scripts that take them (`--tables-from`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1, default=str))


def finish(results: list, root: Path, json_path: str | None, keep: bool) -> None:
    """The end of a benchmark run: the raw results to `json_path` if given, and its temporary
    directory removed unless `keep` (then named on stderr)."""
    if json_path:
        write_json(json_path, results)
    if keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
