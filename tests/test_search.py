"""gunn_search.run.search: the Tuner a search builds (scheduler and sampler from the space)."""

import optuna
import pytest
import yaml

from gunn_search.run.scheduler import ResumableASHA
from gunn_search.run.decisions import make_sampler
from gunn_search.run.search import SearchOptions, build_tuner
from gunn_search.space import parse_space
from tests.conftest import run_cli
from tests.space_helpers import TINY, patched


def tuner_scheduler(data, tmp_path):
    # gpus_per_trial "auto" is resolved by run_search before the Tuner is built
    space = parse_space(patched(data, ("resources.gpus_per_trial", 0)), "s.yaml")
    opts = SearchOptions(space_path="s.yaml", experiment="t", tracking_uri="unused",
                         storage=str(tmp_path))
    tuner = build_tuner(space, opts, callbacks=[])
    return tuner._local_tuner._tune_config.scheduler  # Tune keeps it private; read, not changed


def test_scheduler_asha_or_fifo(tmp_path):
    from ray.tune.schedulers import FIFOScheduler

    asha = tuner_scheduler(TINY, tmp_path)
    assert isinstance(asha, ResumableASHA)
    fifo = tuner_scheduler(patched(TINY, ("search.scheduler", "fifo")), tmp_path)
    assert type(fifo) is FIFOScheduler


def test_a_multi_objective_search_promotes_at_its_rungs_by_pareto_order(tmp_path):
    from gunn_search.run.scheduler import ParetoBracket

    assert tuner_scheduler(TINY, tmp_path).objectives is None  # one objective: Tune's brackets
    mo = tuner_scheduler(patched(TINY, ("search.objectives", [
        {"metric": "val_acc", "mode": "max"}, {"metric": "cost.params", "mode": "min"}])),
        tmp_path)
    assert [o.metric for o in mo.objectives] == ["val_acc", "cost.params"]
    assert all(isinstance(b, ParetoBracket) for b in mo._brackets)


def test_fifo_needs_no_grace_period_within_epochs():
    # grace_period means nothing without ASHA: a value above epochs is not an error then
    parse_space(patched(TINY, ("search.scheduler", "fifo"), ("search.grace_period", 9)), "s.yaml")


def test_tpe_is_multivariate_with_constant_liar_and_a_quarter_random_start():
    space = parse_space(patched(TINY, ("search.num_samples", 40)), "s.yaml")
    tpe = make_sampler(space.search)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._multivariate is True and tpe._constant_liar is True
    assert tpe._n_startup_trials == 10
    few = make_sampler(parse_space(patched(TINY, ("search.num_samples", 8)), "s.yaml").search)
    assert few._n_startup_trials == 3


@pytest.mark.slow
def test_a_fifo_search_trains_every_trial_to_the_end(tmp_path):
    from mlflow.tracking import MlflowClient

    from gunn_search.track import store as tr

    space = patched(TINY, ("name", "fifo"), ("epochs", 2),
                    ("search", {"num_samples": 3, "max_concurrent": 2, "scheduler": "fifo",
                                "grace_period": 1, "reduction_factor": 2}),
                    ("optim.lr", {"low": 0.001, "high": 0.5, "log": True}),
                    ("resources", {"cpus_per_trial": 1, "gpus_per_trial": 0}))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    res = run_cli(["gunn-search", "--space", "space.yaml", "--storage", str(tmp_path / "runs")],
                  tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("fifo")
    runs = client.search_runs([exp.experiment_id], f"tags.`{tr.ROLE_TAG}` = 'trial'")
    assert len(runs) == 3
    for run in runs:
        assert run.data.tags[tr.STATUS_TAG] == "completed", run.data.tags
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == [1, 2]
    # Tune's JSON log is kept (results and ASHA's resume read it); its CSV and TensorBoard ones
    # are not written
    trial_files = {p.name for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert "result.json" in trial_files and "progress.csv" not in trial_files
    assert not any(n.startswith("events.out.tfevents") for n in trial_files)
