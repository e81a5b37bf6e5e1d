"""gpus_per_trial: auto packs max_concurrent trials on the cluster's GPUs; a trial given a GPU
that torch cannot see fails loudly. Ray is told of GPUs this CPU machine does not have."""

import time

import pytest

from gunn_search.run.resources import AUTO, gpus_per_trial, local_gpu_count


@pytest.mark.parametrize("gpus,concurrent,expected", [
    (0, 4, 0.0), (1, 4, 0.25), (2, 4, 0.5), (3, 4, 0.5), (4, 4, 1.0), (8, 4, 1.0), (1, 1, 1.0),
    (1, 3, 1 / 3), (0.5, 2, 0.0)])
def test_auto_shares_the_gpus_among_the_trials_at_a_time(gpus, concurrent, expected):
    per = gpus_per_trial(AUTO, gpus, concurrent)
    assert per == pytest.approx(expected)
    if per:  # whole trials fit on each GPU and all run at once
        assert (1 / per) == int(1 / per) and int(gpus) * int(1 / per) >= concurrent


def test_a_number_is_kept_and_the_local_count_reads_cuda_visible_devices(monkeypatch):
    assert gpus_per_trial(0.3, 8, 4) == 0.3 and gpus_per_trial(0, 8, 4) == 0.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert local_gpu_count() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpu_count() == 0


@pytest.fixture(scope="module")
def ray_with_declared_gpus():
    import ray
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_auto_packs_four_trials_on_one_gpu(ray_with_declared_gpus, tmp_path):
    from ray import tune

    from gunn_search.run.search import resolve_resources
    from gunn_search.space import load_space, with_overrides

    space = with_overrides(load_space("smoke.yaml"), {"search.max_concurrent": 4})
    per = resolve_resources(space).resources.gpus_per_trial
    assert per == 0.25

    def busy(config):
        start = time.time()
        time.sleep(3)
        tune.report({"start": start, "end": time.time(), "gpu": float(len(__import__("ray").get_gpu_ids()))})

    tuner = tune.Tuner(tune.with_resources(busy, {"cpu": 0.5, "gpu": per}),
                       tune_config=tune.TuneConfig(num_samples=4),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    results = [r.metrics for r in tuner.fit()]
    assert len(results) == 4 and all(r["gpu"] == 1 for r in results)  # each saw GPU 0
    assert max(r["start"] for r in results) < min(r["end"] for r in results)  # all at once


@pytest.mark.slow
def test_a_trial_given_a_gpu_without_cuda_fails_with_a_clear_error(ray_with_declared_gpus,
                                                                   tmp_path):
    import torch
    from ray import tune

    from gunn_search.space import load_space
    from gunn_search.run.trainable import train_trial

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    space = load_space("smoke.yaml")
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, space=space), {"cpu": 1, "gpu": 0.5}),
        param_space={"budget_ok": True}, tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    (result,) = list(tuner.fit())
    assert result.error is not None
    assert "given 0.5 GPU by Ray, but torch sees no CUDA device" in str(result.error)
