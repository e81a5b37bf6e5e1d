"""The MLflow UI as a user sees it after `gunn-search --space smoke.yaml`, in a real browser.

A finished tiny search, then the `mlflow ui` command it prints (on a free port), then Chromium
(Debian's `chromium`; `.ci/run` installs it) through Playwright: the printed trials link lists
every trial with its status and val_acc in view, a trial's val_acc chart draws, and the parent
run shows its description (the best trials as a table) and its plots, and the printed best-trial
link opens that run in MLflow's "Model training" pages. Screenshots go to the
test's tmp dir, and to `benchmarks/ui/` (or the directory named) when
GUNN_SEARCH_SAVE_SCREENSHOTS is set, for a person to look at.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, free_port, tail

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 90_000  # the UI's first load on a busy 2-core machine


def screenshot_dirs(tmp_path: Path) -> list[Path]:
    dirs = [tmp_path / "screenshots"]
    save = os.environ.get("GUNN_SEARCH_SAVE_SCREENSHOTS", "")
    if save:
        dirs.append(ROOT / "benchmarks" / "ui" if save.lower() in ("1", "true", "yes")
                    else Path(save))
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def shoot(page, dirs: list[Path], name: str) -> None:
    page.screenshot(path=str(dirs[0] / name))
    for d in dirs[1:]:
        shutil.copy(dirs[0] / name, d / name)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"mlflow ui exited with {proc.returncode}\n{tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"mlflow ui at {url}: not ready after {timeout:.0f} s\n{tail(log)}")


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A finished smoke search: (its directory, its stdout lines)."""
    d = tmp_path_factory.mktemp("ui-search")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([str(BIN / "gunn-search"), "--space", "smoke.yaml", "--num-samples", "3",
                        "--max-epochs", "2"], cwd=d, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return d, r.stdout.splitlines()


@pytest.fixture(scope="module")
def ui(search):
    """The printed `mlflow ui` command running on a free port: (base URL, the printed trials
    and best-trial links with that port)."""
    d, lines = search
    inspect = next(ln for ln in lines if ln.startswith("inspect:"))
    link = next(ln for ln in lines if ln.startswith("trials:")).split(None, 1)[1]
    best = next(ln for ln in lines if ln.startswith("best:")).split(None, 1)[1]
    port = free_port()
    argv = shlex.split(inspect.split(":", 1)[1])
    assert argv[:2] == ["mlflow", "ui"] and argv[-2:] == ["--port", "5000"], inspect
    # One worker instead of four: a browser and a server share 2 cores here.
    argv = [str(BIN / "mlflow"), *argv[1:-1], str(port), "--workers", "1"]
    log = d / "mlflow-ui.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=d, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, log)
        assert link.startswith("http://127.0.0.1:5000/#/experiments/"), link
        yield (base, link.replace("http://127.0.0.1:5000", base, 1),
               best.replace("http://127.0.0.1:5000", base, 1))
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=30)


def store_runs(search_dir: Path):
    """(parent run, trial runs) of the search, read from its MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{search_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("gunn_search.role") == "search")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, trials


def row_text(page, run_name: str) -> dict[str, str]:
    """The runs table's cells (col-id -> text) of the row of `run_name` (the grid splits a row
    into a pinned and a scrolling part that share its row-index)."""
    name_cell = page.locator(".ag-row [col-id='attributes.`Run Name`']", has_text=run_name)
    index = name_cell.locator("xpath=ancestor::div[contains(@class,'ag-row')][1]") \
        .get_attribute("row-index")
    cells = page.locator(f".ag-row[row-index='{index}'] [col-id]")
    return {c.get_attribute("col-id"): c.inner_text().strip() for c in cells.all()}


def in_view(page, selector: str) -> bool:
    """Whether the element is inside the window horizontally (not scrolled away)."""
    box = page.locator(selector).first.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (apt-get install chromium)")
def test_mlflow_ui_shows_the_search(search, ui, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    d, _ = search
    base, link, best_link = ui
    parent, trials = store_runs(d)
    assert len(trials) == 3
    exp_id = parent.info.experiment_id
    dirs = screenshot_dirs(tmp_path)
    status_col, acc_col = "tags.`gunn_search.status`", "metrics.`val_acc`"

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)

            # 1. The printed link: every trial, flat, with its status and val_acc in view.
            page.goto(link)
            for t in trials:
                page.locator(".ag-row", has_text=t.info.run_name).first.wait_for()
            page.locator(f".ag-header-cell[col-id='{acc_col}']").wait_for()
            shoot(page, dirs, "1-trials.png")
            assert re.search(r"/runs\b", page.url), page.url
            for t in trials:
                cells = row_text(page, t.info.run_name)
                assert cells.get(status_col) == t.data.tags["gunn_search.status"], cells
                shown = cells.get(acc_col, "")
                assert shown and abs(float(shown) - t.data.metrics["val_acc"]) < 1e-9, cells
            assert page.locator(".ag-row", has_text=parent.info.run_name).count() == 0
            for col in (status_col, acc_col):
                assert in_view(page, f".ag-header-cell[col-id='{col}']"), f"{col} is off screen"

            # 2. A trial's val_acc chart: its run page (a click on its name), "Model metrics".
            best = max(trials, key=lambda t: t.data.metrics["val_acc"])
            page.locator(".ag-row a", has_text=best.info.run_name).first.click()
            page.get_by_role("tab", name="Model metrics").click()
            page.get_by_placeholder(re.compile("Search metric charts")).fill("val_acc")
            card = page.locator("[data-testid='experiment-view-compare-runs-card']",
                                has_text="val_acc").first
            card.locator("svg.main-svg").first.wait_for()  # plotly has drawn it
            assert card.locator(".scatterlayer .trace").count() >= 1
            shoot(page, dirs, "2-trial-val_acc.png")

            # 3. The search's parent run (the trial's "Parent run" link): its description lists
            # the trials by val_acc in a table.
            page.get_by_role("tab", name="Overview").click()
            page.get_by_role("link", name=parent.info.run_name, exact=True).click()
            page.get_by_role("heading", name=parent.info.run_name).first.wait_for()
            note = page.get_by_test_id("note-editor-preview-content").first
            note.locator("table").wait_for()
            show_more = page.get_by_test_id("show-comment-toggle")
            if show_more.count():
                show_more.first.click()
            header = note.locator("table th").all_inner_texts()
            assert header[:3] == ["trial", "status", "val_acc"], header
            table = note.locator("table").inner_text()
            for t in trials:
                assert t.data.tags["gunn_search.trial_id"] in table, table
                assert t.data.tags["gunn_search.status"] in table, table
            shoot(page, dirs, "3-search-description.png")

            # 4. Its plots (plots/*.png) in its artifacts.
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("plots", exact=True).first.click()
            pngs = page.get_by_text(re.compile(r"\.png$"))
            pngs.first.wait_for()
            names = pngs.all_inner_texts()
            assert any("history" in n for n in names), names
            pngs.first.click()
            img = page.locator("img[src^='blob:']").first  # the UI shows a fetched artifact
            img.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                   arg=img.element_handle())
            shoot(page, dirs, "4-search-plots.png")

            # 5. The printed best-trial link, in a browser that never chose a page kind: the
            # best trial's run page in the "Model training" pages (its tab link says "Runs";
            # MLflow's GenAI pages say "Evaluations").
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            printed = next(t for t in trials if f"/runs/{t.info.run_id}?" in best_link)
            page.goto(best_link)
            page.get_by_role("heading", name=printed.info.run_name).first.wait_for()
            tab_link = page.get_by_test_id("experiment-observatory-link-runs")
            assert tab_link.inner_text().strip() == "Runs"
            shoot(page, dirs, "5-best-trial.png")
        finally:
            browser.close()
