"""The private names of Ray, Optuna and MLflow: all in gunn_search/private_names.py, declared with
why they are needed, checked when a search or an ablation starts (one line, exit 2, before Ray
starts), and the versions they were tested with the ones pyproject.toml declares."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from gunn_search import private_names as pn
from gunn_search.errors import SearchError

ROOT = Path(__file__).resolve().parents[1]
MODULE = "gunn_search/private_names.py"
LIBRARIES = ("ray", "optuna", "mlflow", "pyarrow", "sqlalchemy")
SCANNED = ("gunn_search", "trainers")
ATTR_FUNCS = ("getattr", "setattr", "hasattr", "delattr")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources(roots=SCANNED) -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p))
            for r in roots for p in sorted((ROOT / r).rglob("*.py"))}


def _attribute_uses(tree):
    """(node, name) of every `x._name` and `getattr(x, "_name")`-like use in `tree`."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and _private(n.attr):
            yield n, n.attr
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
              and n.func.id in ATTR_FUNCS and len(n.args) >= 2
              and isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str)
              and _private(n.args[1].value)):
            yield n, n.args[1].value


def ours(trees: dict[str, ast.Module]) -> set[str]:
    """The private names our own code defines: functions, classes, and attributes it sets."""
    names = set()
    for tree in trees.values():
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, (ast.Store, ast.Del)):
                names.add(n.attr)
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                  and n.func.attr == "setdefault" and n.args
                  and isinstance(n.args[0], ast.Constant)):  # self.__dict__.setdefault("_x")
                names.add(n.args[0].value)
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                  and n.func.id == "setattr" and len(n.args) >= 2
                  and isinstance(n.args[1], ast.Constant)):
                names.add(n.args[1].value)
    declared = {p.name for p in pn.NAMES}
    return {n for n in names if isinstance(n, str)} - declared


def violations(trees: dict[str, ast.Module], names=pn.NAMES) -> list[str]:
    """Each use of a private library name outside the places `names` allows, as
    "path:line: what"."""
    allowed: dict[str, set[str]] = {}
    for p in names:
        allowed.setdefault(p.name, {MODULE}).update(p.used_in)
    own = (ours(trees) | set(pn.OTHERS)) - set(allowed)
    out = []
    for path, tree in trees.items():
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                parts = n.module.split(".")
                hidden = [a.name for a in n.names if _private(a.name)]
                if parts[0] in LIBRARIES and (any(map(_private, parts)) or hidden) \
                        and path != MODULE:
                    out.append(f"{path}:{n.lineno}: from {n.module} import "
                               f"{', '.join(a.name for a in n.names)}")
            elif isinstance(n, ast.Import):
                for a in n.names:
                    parts = a.name.split(".")
                    if parts[0] in LIBRARIES and any(map(_private, parts)) and path != MODULE:
                        out.append(f"{path}:{n.lineno}: import {a.name}")
        for n, name in _attribute_uses(tree):
            if name in allowed:
                if path not in allowed[name]:
                    out.append(f"{path}:{n.lineno}: {name} (declared in {MODULE}, to be used "
                               f"only there or in {sorted(allowed[name] - {MODULE})})")
            elif name not in own and path != MODULE:
                out.append(f"{path}:{n.lineno}: {name} (no name of ours: a library's, not "
                           f"declared in {MODULE})")
    return out


def test_no_private_library_name_outside_the_module():
    assert violations(_sources()) == []


def _library_privates(cls: type) -> set[str]:
    """The private names the library classes among `cls`'s bases have or set."""
    names = set()
    for klass in inspect.getmro(cls):
        if klass.__module__.split(".")[0] in LIBRARIES:
            names |= {k for k in vars(klass) if _private(k)}
            names |= {k for k in pn.stored_attributes(klass) if _private(k)}
    return names


def test_our_subclasses_touch_no_undeclared_private_of_their_library_bases():
    """A method or attribute of ours in a subclass of a library class that happens to be one of
    the base's private names (overriding or reusing it) must be declared too."""
    declared = {(p.name, f) for p in pn.NAMES for f in p.used_in}
    bad, checked = [], 0
    for path, tree in _sources().items():
        for node in tree.body:
            if not (isinstance(node, ast.ClassDef) and node.bases):
                continue
            module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
            cls = getattr(module, node.name)
            library = _library_privates(cls)
            if not library:
                continue
            checked += 1
            for n in ast.walk(node):
                name = (n.name if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                        else n.attr if isinstance(n, ast.Attribute) else None)
                if name in library and (name, path) not in declared:
                    bad.append(f"{path}:{n.lineno}: {node.name}.{name} is a private name of "
                               f"its library base")
    assert checked >= 5  # ResumableASHA, ParetoBracket, the searcher, the callbacks
    assert bad == []


SAMPLE = '''
from ray.tune.schedulers.async_hyperband import _Bracket
from ray._private import services
import ray.train._internal.storage
from optuna.trial import TrialState

class Mine:
    def __init__(self):
        self._mine = 1

    def go(self, study, scheduler):
        self._mine += 1
        getattr(scheduler, "_trial_info")
        return study._storage, study._undeclared_library_thing, self._mine
'''


def test_the_scanner_finds_each_kind_of_use():
    found = violations({"gunn_search/elsewhere.py": ast.parse(SAMPLE)})
    text = "\n".join(found)
    assert len(found) == 6, text
    for what in ("import _Bracket", "ray._private", "ray.train._internal.storage",
                 "_trial_info", "_storage", "_undeclared_library_thing"):
        assert what in text, text
    assert "_mine" not in text and "TrialState" not in text
    # all of them are fine in the module itself
    assert violations({MODULE: ast.parse(SAMPLE)}) == []
    # in the subclass the table names for ASHA's attributes, those are; the rest is not
    found = violations({"gunn_search/run/scheduler.py": ast.parse(SAMPLE)})
    assert len(found) == 5 and not any("_trial_info" in v for v in found), found


def _used_names(tree) -> set[str]:
    """Attribute names, imported names and the names given as strings to a call (getattr,
    `_need`), leaving out the table's own `Private(...)` entries."""
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.ImportFrom):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name)
                                              and n.func.id == "Private"):
            names |= {a.value for a in n.args if isinstance(a, ast.Constant)}
    return names


def test_every_name_is_declared_with_why_and_where_and_used():
    trees = _sources()
    for p in pn.NAMES:
        assert p.package in pn.TESTED and p.why and p.breaks, p
        assert all(f in trees for f in p.used_in), p
        used = set().union(*(_used_names(trees[f]) for f in [MODULE, *p.used_in]))
        assert p.name in used, f"{p.dotted} is declared but used nowhere"


# --- the ranges --------------------------------------------------------------------------------

def test_pyproject_declares_the_tested_ranges_and_they_hold_here():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    for package, spec in pn.TESTED.items():
        req = reqs[package]
        assert str(req.specifier) == str(Requirement(f"x{spec}").specifier), (package, req)
        assert pn.REQUIREMENT[package] == package + (f"[{','.join(sorted(req.extras))}]"
                                                     if req.extras else "")
        installed = Version(importlib.metadata.version(package))
        assert installed in req.specifier, f"{package} {installed} outside {spec}"


# --- check() -----------------------------------------------------------------------------------

def test_check_passes_with_the_installed_libraries():
    pn.check(pn.SEARCH)
    pn.check(pn.ABLATE)
    assert all(pn.present(p) for p in pn.NAMES)


def one_line(e: SearchError, package: str, name: str) -> str:
    text = str(e)
    assert "\n" not in text
    assert text.startswith(f"{package} {importlib.metadata.version(package)} has no ")
    assert f"{pn.REQUIREMENT[package]}{pn.TESTED[package]}" in text
    assert name in text
    return text


def test_a_module_name_taken_away_is_one_line_naming_the_package(monkeypatch):
    from ray.tune.schedulers import async_hyperband

    monkeypatch.delattr(async_hyperband, "_Bracket")
    with pytest.raises(SearchError) as e:
        pn.check()
    one_line(e.value, "ray", "ray.tune.schedulers.async_hyperband._Bracket")
    pn.check(pn.ABLATE)  # the ablation does not use it


def test_mlflow_and_optuna_names_taken_away(monkeypatch):
    from mlflow.store.db import utils
    import optuna.distributions as d

    monkeypatch.delattr(utils, "_initialize_tables")
    with pytest.raises(SearchError) as e:
        pn.check(pn.ABLATE)
    one_line(e.value, "mlflow", "_initialize_tables")
    monkeypatch.undo()
    monkeypatch.delattr(d.BaseDistribution, "_contains")
    with pytest.raises(SearchError) as e:
        pn.check()
    one_line(e.value, "optuna", "BaseDistribution._contains")


def test_an_instance_attribute_no_longer_set_is_found(monkeypatch):
    """An instance attribute is there while the library's methods still set it."""
    from ray.tune.schedulers.async_hyperband import AsyncHyperBandScheduler

    (trial_info,) = [p for p in pn.NAMES if p.name == "_trial_info"]
    assert pn.present(trial_info)

    def __init__(self, *args, **kwargs):  # a Ray whose ASHA keeps its brackets elsewhere
        self.trial_brackets = {}

    monkeypatch.setattr(AsyncHyperBandScheduler, "__init__", __init__)
    assert not pn.present(trial_info)
    with pytest.raises(SearchError) as e:
        pn.check()
    one_line(e.value, "ray", "AsyncHyperBandScheduler._")


def test_a_private_module_gone_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.train._internal.storage", None)  # ImportError
    with pytest.raises(SearchError) as e:
        pn.check(pn.ABLATE)
    one_line(e.value, "ray", "ray.train._internal.storage._upload_to_fs_path")


# --- the commands ------------------------------------------------------------------------------

def test_search_with_a_name_gone_exits_2_before_ray_starts(tmp_path, capsys, monkeypatch):
    import ray
    from ray.tune.schedulers import async_hyperband

    from gunn_search.cli import main as search_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delattr(async_hyperband, "_Bracket")
    rc = search_cli.main(["--space", "smoke.yaml", "--tracking-uri",
                          f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and err.startswith("gunn-search: error: ray "), err
    assert "_Bracket" in err and pn.TESTED["ray"] in err, err
    assert not ray.is_initialized()
    assert not (tmp_path / "gunn-search-runs").exists()  # nothing started


def test_ablate_with_a_name_gone_exits_2_before_ray_starts(tmp_path, capsys, monkeypatch):
    import ray
    from mlflow.store.db import utils

    from gunn_search.cli import main as search_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delattr(utils, "_get_latest_schema_revision")
    rc = search_cli.main(["ablate", "--experiment", "smoke", "--gpus-per-trial", "0",
                          "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and err.startswith("gunn-search: error: mlflow "), err
    assert pn.TESTED["mlflow"] in err, err
    assert not ray.is_initialized()


def test_the_console_script_exits_2_with_one_line(tmp_path):
    """As a user runs it: the process's exit status and its whole stderr."""
    code = ("import sys; from ray.tune.schedulers import async_hyperband as a; del a._Bracket; "
            "sys.argv = ['gunn-search', '--space', 'smoke.yaml', '--tracking-uri', "
            f"'sqlite:///{tmp_path}/mlflow.db']; from gunn_search.cli.main import run; run()")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                       capture_output=True, timeout=300)
    err = p.stderr.strip()
    assert p.returncode == 2, err
    assert "\n" not in err and err.startswith("gunn-search: error: ray 2."), err
    assert not (tmp_path / "gunn-search-runs").exists()
