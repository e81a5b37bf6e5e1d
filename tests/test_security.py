"""Safe by default: no unsafe deserialisation in the code, services on 127.0.0.1."""

import re
import sys
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("trainers", "gunn_search", "benchmarks") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("pattern,why", [
    (r"\byaml\.(load|unsafe_load|full_load)\(", "YAML must be read with yaml.safe_load"),
    (r"\bpickle\.loads?\(", "no pickle of user input"),
    (r"torch\.load\((?![^)]*weights_only=True)", "torch.load needs weights_only=True"),
    (r"0\.0\.0\.0", "nothing binds all interfaces by default"),
])
def test_no_unsafe_calls_in_sources(pattern, why):
    assert SOURCES, "no sources found"
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not hits, f"{why}: {hits}"


def test_trainers_do_not_import_the_search_stack():
    for p in (ROOT / "trainers").rglob("*.py"):
        for line in p.read_text().splitlines():
            assert not re.match(r"\s*(import|from)\s+(ray|mlflow|optuna|gunn_search)\b", line), \
                f"{p.name}: {line}"


def test_readme_mlflow_ui_binds_loopback():
    readme = (ROOT / "README.md").read_text()
    cmds = [ln for ln in readme.splitlines() if ln.strip().startswith("mlflow ui")]
    assert cmds and all("--host 127.0.0.1" in c for c in cmds)


def test_pure_trainer_imports_without_ray_or_mlflow():
    code = ("import sys, trainers.cli, trainers.loop, trainers.data, trainers.model.network; "
            "bad = [m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
