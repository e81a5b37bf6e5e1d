"""The import contract in pyproject.toml (`[tool.importlinter]`): the layers of docs/design.md
hold, and the check would catch a module that broke them.

Both run `lint-imports` in a fresh interpreter, in the tree it checks and with that tree first on
its path: import-linter finds the packages on `sys.path`, and the installed (editable) copy of
gunn_search must not stand in for the one being checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gunn_search", "trainers")
# lint-imports itself, run by the interpreter running the tests (its console script may not be on
# PATH); `-c` puts the working directory first on sys.path, as the script does.
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as m; m()",
        "--no-cache", "--no-logo", "pyproject.toml"]


def contracts(root: Path) -> dict[str, str]:
    """id -> name of the contracts in `root`'s pyproject.toml."""
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c["name"] for c in data["tool"]["importlinter"]["contracts"]}


def env_for(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root)}


def lint(root: Path) -> tuple[int, str]:
    """lint-imports' exit code and its output (whitespace made single: it wraps long names)."""
    p = subprocess.run(LINT, cwd=root, env=env_for(root), text=True, capture_output=True,
                       timeout=300)
    return p.returncode, " ".join((p.stdout + p.stderr).split())


def imported_from(root: Path) -> Path:
    """Where a fresh interpreter set up as `lint` finds gunn_search."""
    p = subprocess.run([sys.executable, "-c", "import gunn_search; print(gunn_search.__file__)"],
                       cwd=root, env=env_for(root), text=True, capture_output=True, check=True)
    return Path(p.stdout.strip()).resolve()


def test_the_repository_keeps_every_contract():
    rc, out = lint(ROOT)
    names = contracts(ROOT)
    assert rc == 0, out
    assert f"Contracts: {len(names)} kept, 0 broken." in out, out
    for name in names.values():
        assert f"{name} KEPT" in out, (name, out)


@pytest.fixture
def copy(tmp_path) -> Path:
    """The packages and the contract, copied: the check runs on this tree, not the repository."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert imported_from(tmp_path) == (tmp_path / "gunn_search" / "__init__.py").resolve()
    return tmp_path


# Each an import that reaches upward (code added to a module, or a new module), and the contract
# that must then be broken. Most are inside a function: a lazy import counts as much as one at the
# top of a module.
BREAKS = {
    "space imports the CLI": (
        "gunn_search/space/upward.py",
        "def main():\n    import gunn_search.cli.main\n    return gunn_search.cli.main\n",
        "layers", "gunn_search.space is not allowed to import gunn_search.cli"),
    "track imports run": (
        "gunn_search/track/trial_runs.py",
        "\n\ndef _hook():\n    from gunn_search.run import interrupts\n    return interrupts\n",
        "layers", "gunn_search.track is not allowed to import gunn_search.run"),
    "the API imports the CLI": (
        "gunn_search/api.py",
        "\n\ndef _flags():\n    from gunn_search.cli import flags\n    return flags\n",
        "api-not-cli", "gunn_search.api is not allowed to import gunn_search.cli"),
    "the trainer imports MLflow": (
        "trainers/loop.py", "\n\ndef _mlflow():\n    import mlflow\n    return mlflow\n",
        "trainers-no-search-libraries", "trainers is not allowed to import mlflow"),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_an_upward_import_breaks_the_contract(copy, case):
    path, code, contract, why = BREAKS[case]
    with open(copy / path, "a", encoding="utf-8") as f:
        f.write(code)
    rc, out = lint(copy)
    assert rc != 0, out
    assert f"{contracts(copy)[contract]} BROKEN" in out, out
    assert why in out, out
