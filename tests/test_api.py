"""gunn_search's Python API: typed results, the commands' errors as exceptions, callable twice
in one process, a caller's Ray session and signal handlers left as they were."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gunn_search
from gunn_search.errors import USER_ERRORS, SearchError, UsageError
from trainers.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_package_imports_nothing_heavy():
    code = ("import sys, gunn_search; f = gunn_search.search; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'ray', 'mlflow', 'torch', 'optuna'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_user_mistakes_are_typed_one_line_exceptions_not_exits(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {num_samples: 0}\n")
    with pytest.raises(ConfigError) as e:
        gunn_search.search(bad)
    assert "search.num_samples" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="no MLflow store at"):
        gunn_search.export("smoke", tmp_path / "best.yaml",
                           tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    with pytest.raises(UsageError, match="--seeds must be >= 2"):
        gunn_search.ablate("smoke", seeds=1)
    with pytest.raises(UsageError, match="--max-failures must be >= 0"):
        gunn_search.search("smoke.yaml", max_failures=-1)
    assert all(issubclass(c, USER_ERRORS) for c in (ConfigError, UsageError, SearchError))


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python (notebooks)"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_twice_in_one_process_and_respects_the_callers_ray(tmp_path,
                                                                                    monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    handler = signal.getsignal(signal.SIGINT)
    scope: dict = {}
    exec(readme_example(), scope)  # the README's own lines
    result, best, trained = scope["result"], scope["best"], scope["trained"]
    from trainers.config import TrainConfig

    assert isinstance(result.best_config, TrainConfig) and 0 <= result.best_value <= 1
    assert len(result.trials) == 2 and result.best_run_id in set(result.trials["run_id"])
    assert set(result.trials["status"]) <= {"completed", "stopped by ASHA"}
    assert best.path == tmp_path / "best.yaml" and best.config.model == result.best_config.model
    assert trained.status == "completed"
    assert not ray.is_initialized()  # the search started Ray and shut it down
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back

    # Again, same experiment: a second search beside the first, with its own parent run, study
    # and trials.
    second = gunn_search.search("smoke.yaml", num_samples=2, max_epochs=1, experiment="notebook-1")
    assert (result.search, second.search) == ("notebook-1", "notebook-1-2")
    assert second.parent_run_id != result.parent_run_id and len(second.trials) == 2
    assert not set(second.trials["run_id"]) & set(result.trials["run_id"])
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("notebook-1")
    roles = [r.data.tags.get("gunn_search.role") for r in client.search_runs([exp.experiment_id])]
    assert roles.count("search") == 2
    import optuna
    assert {"notebook-1", "notebook-1-2"} <= set(
        optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}"))

    # The caller's own Ray session: used, and left open.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        again = gunn_search.search("smoke.yaml", num_samples=2, max_epochs=1,
                                   experiment="notebook-2")
        assert ray.is_initialized() and len(again.trials) == 2
    finally:
        ray.shutdown()
    assert os.getcwd() == str(tmp_path)
