"""benchmarks/gpu_check.py: its report's section in RESULTS.md, and its CPU dry run end to end
(the GPU run itself needs a GPU: `python benchmarks/gpu_check.py`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    """gpu_check.py loaded as its command runs it: it puts benchmarks/ on sys.path to import its
    parts (gpu_check_plan, gpu_check_steps, gpu_check_report); both are undone afterwards."""
    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path[:] = path
        for name, m in list(sys.modules.items()):
            if Path(getattr(m, "__file__", None) or "/").parent == BENCHMARKS:
                sys.modules.pop(name)


@pytest.fixture(scope="module")
def plan_mod(gc):
    return sys.modules["gpu_check_plan"]


@pytest.fixture(scope="module")
def steps(gc):
    return sys.modules["gpu_check_steps"]


@pytest.fixture(scope="module")
def rep(gc):
    return sys.modules["gpu_check_report"]


def test_the_section_replaces_the_old_one_and_keeps_the_rest(rep, tmp_path):
    f = tmp_path / "RESULTS.md"
    f.write_text(f"# Results\n\nbefore\n\n{rep.BEGIN}\nold numbers\n{rep.END}\n\nafter\n")
    rep.write_section(f, f"{rep.BEGIN}\nnew numbers\n{rep.END}\n")
    assert f.read_text() == f"# Results\n\nbefore\n\n{rep.BEGIN}\nnew numbers\n{rep.END}\n\nafter\n"
    rep.write_section(f, f"{rep.BEGIN}\nnewer\n{rep.END}\n")  # again: still one section
    assert f.read_text().count(rep.BEGIN) == 1 and "newer" in f.read_text()


def test_a_file_without_the_section_gets_it_at_its_end(rep, tmp_path):
    f = tmp_path / "RESULTS.md"
    f.write_text("# Results\n")
    rep.write_section(f, f"{rep.BEGIN}\nx\n{rep.END}\n")
    assert f.read_text() == f"# Results\n\n{rep.BEGIN}\nx\n{rep.END}\n"
    new = tmp_path / "new.md"
    rep.write_section(new, f"{rep.BEGIN}\nx\n{rep.END}\n")
    assert new.read_text() == f"{rep.BEGIN}\nx\n{rep.END}\n"


def test_pytest_summary_is_counted(steps):
    out = "....s\nFAILED tests/test_cuda.py::test_x - boom\n2 failed, 8 passed, 3 skipped, 1 error in 9.1s\n"
    assert steps.count_outcomes(out) == {"failed": 2, "passed": 8, "skipped": 3, "error": 1}
    assert steps.count_outcomes("10 skipped, 600 deselected in 12.0s") == \
        {"skipped": 10, "deselected": 600}


def test_the_gpu_check_needs_a_gpu_and_the_dry_run_an_out_file(gc, monkeypatch, capsys):
    monkeypatch.setattr(gc, "machine", lambda plan: {"cuda_available": False})
    for argv, words in ([[], "no CUDA GPU"], [["--cpu"], "--out"]):
        with pytest.raises(SystemExit) as e:
            gc.main(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err


def test_a_failed_step_is_reported_in_the_section(plan_mod, rep):
    plan = plan_mod.make_plan(cpu=False, budget_s=None)
    m = {"device": "NVIDIA X (80.0 GiB)", "cuda": "13.0", "torch": "2.x", "python": "3.11",
         "cpus": 16}
    results = {"tests": {"counts": {"passed": 9, "failed": 1}, "failed": ["FAILED tests/a.py::t"],
                         "seconds": 50.0, "error": "pytest exit code 1"},
               "memory": [{"model": "sunn15", "precision": "float32", "peak_bytes": 2e9,
                           "baseline_allocated_bytes": 1e8, "peak_reserved_bytes": 2.5e9,
                           "device_used_bytes": 3e9},
                          {"model": "gunn15:recompute", "precision": "float32",
                           "peak_bytes": 8e8, "baseline_allocated_bytes": 1e8,
                           "peak_reserved_bytes": 1e9, "device_used_bytes": 1.5e9}],
               "eager": [{"model": "sunn15", "mode": "grouped", "compile": False,
                          "images_per_s": 1000.0, "peak_memory_bytes": 2e9, "first_epoch_s": 3.0},
                         {"model": "gunn15", "mode": "recompute", "compile": False,
                          "error": "timed out after 45 s"}],
               "search": {"error": "timed out after 150 s"}}
    text = rep.report(plan, m, results, 400.0, "2026-12-01 10:00 UTC")
    assert text.startswith(rep.BEGIN) and text.endswith(rep.END + "\n")
    assert "NVIDIA X" in text and "9 passed, 1 failed" in text and "pytest exit code 1" in text
    assert "| gunn15:recompute | float32 | 800 | 900 | 1,000 | 1,500 | 0.40x | 0.60x |" in text
    assert "timed out after 45 s" in text and "**timed out after 150 s**" in text
    assert rep.failures(results) == ["tests: pytest exit code 1", "eager: gunn15 timed out after 45 s",
                                    "search: timed out after 150 s"]
    trial = {"status": "completed", "val_acc": 0.25, "peak_memory_bytes": 3e7, "lr": "0.1",
             "span": (0, 1)}
    results["search"] = {"wall_s": 61.0, "rc": 0, "trials": [trial] * 4,
                         "max_concurrent_trials": 4, "gpu_processes_max": 4,
                         "gpu_used_mib_max": 2000}
    text = rep.report(plan, m, results, 400.0, "2026-12-01 10:00 UTC")
    assert ("**Four trials packed on one GPU (`--gpus-per-trial 0.25`)**, a tiny synthetic space, "
            "2 epoch(s) each: wall 61 s; 4 completed; at most 4 trials running at once (MLflow "
            "run spans); at most 4 processes (2000 MiB) on the GPU at once (nvidia-smi). Per "
            "trial: val_acc 0.250, 0.250, 0.250, 0.250; peak MB 30, 30, 30, 30.") in text


@pytest.mark.slow
def test_cpu_dry_run_runs_every_step_and_writes_its_section(rep, tmp_path):
    """The whole check on the CPU with tiny sizes (5-8 minutes on 2 busy cores: GUNN-15's
    memory at batch 2 in six fresh processes, two compiles, a 4-trial search)."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n<!-- gpu_check -->\nold\n<!-- /gpu_check -->\n\n## Next\n")
    raw = tmp_path / "raw.json"
    res = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--json",
                          str(raw)], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# Benchmark results\n\n<!-- gpu_check -->\n## GPU check")
    assert text.endswith("<!-- /gpu_check -->\n\n## Next\n") and "\nold\n" not in text
    assert res.stdout in text  # the section is also printed
    results = json.loads(raw.read_text())["results"]
    assert set(results) == {"tests", "memory", "eager", "search", "compiled"}
    # pytest -m cuda ran and, without a GPU, skipped every CUDA test
    counts = results["tests"]["counts"]
    assert counts.get("skipped", 0) >= 10 and not counts.get("failed") and not counts.get("passed")
    # every model measured, every trial completed, nothing reported as an error
    assert [r["model"] for r in results["memory"]] == ["sunn15", "gunn15:recompute",
                                                        "gunn15:keep"] * 2
    assert all(r["peak_bytes"] > 0 for r in results["memory"])
    assert all(r["images_per_s"] > 0 for r in results["eager"] + results["compiled"])
    assert [r["compile"] for r in results["compiled"]] == [True, True]
    assert [t["status"] for t in results["search"]["trials"]] == ["completed"] * 4
    assert rep.failures(results) == []
    assert "4 completed" in text and "CPU dry run" in text
