"""MLflow under load: are any per-epoch metric points lost when many short trials log at once?

What it measures
    A real `gunn-search` run (subprocess, the CLI) of 32 short trials: a space derived from
    smoke.yaml with dataset `synthetic` (640 training images, so an epoch takes about a second
    and results arrive often), 2 epochs per trial, ASHA grace_period = epochs (no early stop),
    4 trials at a time (0.5 CPU each, so Ray runs 4 on 2 cores), smoke's tiny networks. Logged to
    (a) the default backend, a SQLite file (`sqlite:///.../mlflow.db`), and
    (b) a local tracking server started by this script:
        mlflow server --host 127.0.0.1 --port <free> --backend-store-uri sqlite:///<tmp>/srv.db
                      --default-artifact-root <tmp>/art --workers 1
    (ready when GET /health answers 200; stopped at the end).

    Counting, from MLflow (MlflowClient) after the search has exited: for every child run of the
    search's parent run and every metric key logged every epoch
    (`gunn_search.track.store.EPOCH_METRICS` less the rung-only RUNG_METRICS; 8 keys when the
    table below was measured), `len(get_metric_history(run, key))` against the number of epochs
    the trial ran.
    The epochs a trial ran come from its status tag (`completed` -> epochs, `stopped by ASHA`
    -> the tag `gunn_search.stopped_at_epoch`) and, independently, from Tune's own per-trial
    `result.json`; the two must agree. expected points = sum over runs of epochs x keys; lost =
    expected - logged (must be 0); extra = points beyond one per (run, key, epoch). The val_acc
    values are also compared with Tune's result.json, point by point.

Usage
    python benchmarks/mlflow_load.py [--backend sqlite|server|both] [--num-samples 32]

Machine and result (2026-11-23, 2-core x86-64 VM, no GPU, torch 2.14.1+cu130 on CPU, ray 2.60.0,
mlflow 3.17.2; the machine was shared with other engineers' test runs, load average 3.1-5.0 (1 min)):

| | (a) sqlite | (b) server |
|---|---:|---:|
| tracking URI | sqlite:///$TMP/gunn-mlflow-load-vciqfry3/sqlite/mlflow.db | http://127.0.0.1:49303 |
| child runs (Tune trials) | 32 (32) | 32 (32) |
| trial statuses | completed x32 | completed x32 |
| child runs not FINISHED | 0 | 0 |
| epochs: status tag vs Tune result.json disagree | 0 | 0 |
| expected metric points | 512 | 512 |
| logged metric points | 512 | 512 |
| **lost points** | **0** | **0** |
| extra (duplicate) points | 0 | 0 |
| val_acc points differing from Tune's | 0 | 0 |
| parent: status / best_val_acc points / artifacts | FINISHED / 4 / 3 | FINISHED / 5 / 3 |
| MLflow errors on gunn-search stderr | 0 | 0 |
| wall of the search (s) | 175.0 | 133.6 |
| server ready after (s) | - | 6.8 |
| load average before -> after | 3.14 5.23 6.51 -> 4.99 5.40 6.36 | 4.99 5.40 6.36 -> 4.27 5.11 6.12 |

    No metric point lost, duplicated or altered with either backend (512 of 512 each: 32 runs x
    2 epochs x 8 keys), every run FINISHED with its status tag, no MLflow error on stderr.
    Wall times differ by the machine's load, not by backend (trials start in waves of 4 because
    each one waits ~10 s for a new Ray worker process). Summary: benchmarks/RESULTS.md, "MLflow
    load and search growth".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (check_exit, column_table, derive_space, finish, loadavg,  # noqa: E402
                     run_cli, search_runs, start_server, stop_server, tune_results)


def count_points(uri: str, experiment: str, storage: Path, max_epochs: int) -> dict:
    from gunn_search.track.store import EPOCH_METRICS, RUNG_METRICS
    from gunn_search.status import TrialStatus

    client, parent, children = search_runs(uri, experiment)
    tune = tune_results(storage)
    expected = logged = lost = extra = mismatched = disagree = 0
    statuses: dict[str, int] = {}
    unfinished = 0
    for r in children:
        status = r.data.tags.get("gunn_search.status", "?")
        statuses[status] = statuses.get(status, 0) + 1
        if r.info.status != "FINISHED":
            unfinished += 1
        stopped_at = r.data.tags.get("gunn_search.stopped_at_epoch")
        ep_tag = (max_epochs if status == TrialStatus.COMPLETED
                  else int(stopped_at) if status == TrialStatus.STOPPED and stopped_at else None)
        tres = tune.get(r.data.tags.get("gunn_search.trial_id"), [])
        tune_epochs = {x["epoch"]: x for x in tres if "epoch" in x}
        ep_tune = len(tune_epochs)
        if ep_tag is None or ep_tag != ep_tune:
            disagree += 1
        epochs = ep_tune if ep_tag is None else ep_tag
        for k in (k for k in EPOCH_METRICS if k not in RUNG_METRICS):  # those every epoch
            hist = client.get_metric_history(r.info.run_id, k)
            steps = {h.step for h in hist}
            expected += epochs
            logged += len(hist)
            lost += len(set(range(1, epochs + 1)) - steps)
            extra += len(hist) - len(steps & set(range(1, epochs + 1)))
            if k == "val_acc":
                for h in hist:
                    t = tune_epochs.get(h.step)
                    if t is None or abs(t["val_acc"] - h.value) > 1e-12:
                        mismatched += 1
    best = client.get_metric_history(parent.info.run_id, "best_val_acc")
    return {"runs": len(children), "expected": expected, "logged": logged, "lost": lost,
            "extra": extra, "val_acc_mismatch": mismatched, "epoch_count_disagree": disagree,
            "statuses": statuses, "unfinished_runs": unfinished,
            "parent_status": parent.info.status, "parent_best_points": len(best),
            "parent_artifacts": len(client.list_artifacts(parent.info.run_id)),
            "tune_trials": len(tune)}


def run_backend(backend: str, root: Path, num_samples: int, epochs: int, concurrent: int) -> dict:
    work = root / backend
    work.mkdir(parents=True)
    space = derive_space(
        work / "space.yaml", "mlflow_load",
        data={"name": "synthetic", "synthetic_train_size": 640, "synthetic_test_size": 200,
              "download": False},
        epochs=epochs,
        search={"num_samples": num_samples, "max_concurrent": concurrent, "grace_period": epochs},
        resources={"cpus_per_trial": 2 / concurrent, "gpus_per_trial": 0})
    server, ready = None, None
    load0 = loadavg()
    if backend == "server":
        server, uri, ready = start_server(work)
    else:
        uri = f"sqlite:///{work / 'mlflow.db'}"
    exp = f"mlflow_load_{backend}"
    try:
        print(f"backend {backend}: {uri} (load {load0})", file=sys.stderr, flush=True)
        res = run_cli(space, work, uri, exp)
        load1 = loadavg()
        errors = [ln for _, ln in res["stderr"]
                  if "MLflow write failed" in ln or "could not be delivered" in ln
                  or "could not log" in ln or "Traceback" in ln]
        check_exit(res)
        counts = count_points(uri, exp, work / "runs" / exp, epochs)
    finally:
        if server is not None:
            stop_server(server)
    return {"backend": backend, "uri": uri, "wall": res["wall"], "server_ready_s": ready,
            "load_before": load0, "load_after": load1, "stderr_errors": errors, **counts}


def table(results: list[dict]) -> str:
    rows = [
        ("tracking URI", lambda r: r["uri"].replace(str(Path(tempfile.gettempdir())), "$TMP")),
        ("child runs (Tune trials)", lambda r: f"{r['runs']} ({r['tune_trials']})"),
        ("trial statuses", lambda r: ", ".join(f"{k} x{v}" for k, v in sorted(r["statuses"].items()))),
        ("child runs not FINISHED", lambda r: str(r["unfinished_runs"])),
        ("epochs: status tag vs Tune result.json disagree", lambda r: str(r["epoch_count_disagree"])),
        ("expected metric points", lambda r: str(r["expected"])),
        ("logged metric points", lambda r: str(r["logged"])),
        ("**lost points**", lambda r: f"**{r['lost']}**"),
        ("extra (duplicate) points", lambda r: str(r["extra"])),
        ("val_acc points differing from Tune's", lambda r: str(r["val_acc_mismatch"])),
        ("parent: status / best_val_acc points / artifacts",
         lambda r: f"{r['parent_status']} / {r['parent_best_points']} / {r['parent_artifacts']}"),
        ("MLflow errors on gunn-search stderr", lambda r: str(len(r["stderr_errors"]))),
        ("wall of the search (s)", lambda r: f"{r['wall']:.1f}"),
        ("server ready after (s)", lambda r: "-" if r["server_ready_s"] is None
         else f"{r['server_ready_s']:.1f}"),
        ("load average before -> after", lambda r: f"{r['load_before']} -> {r['load_after']}"),
    ]
    return column_table([f"({chr(97 + i)}) {r['backend']}" for i, r in enumerate(results)],
                        rows, results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "server", "both"], default="both")
    ap.add_argument("--num-samples", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gunn-mlflow-load-"))
    backends = ["sqlite", "server"] if args.backend == "both" else [args.backend]
    results = [run_backend(b, root, args.num_samples, args.epochs, args.concurrent)
               for b in backends]
    print(table(results))
    for r in results:
        for ln in r["stderr_errors"]:
            print(f"{r['backend']}: {ln}")
    finish(results, root, args.json, args.keep)


if __name__ == "__main__":
    main()
