"""gunn_search.run.spare_cpus: the idle slots of a search's end go to the trials still training."""

from types import SimpleNamespace

import pytest
import ray

from gunn_search.run.spare_cpus import ExtraThreads, LentThreads, SpareCPUs, spare_threads


@pytest.mark.parametrize("total,created,live,slots,cpus,extra", [
    (8, 6, 1, 2, 1, 0),    # trials still to come: a free slot is about to get one
    (8, 8, 2, 2, 1, 0),    # every slot busy
    (8, 8, 1, 2, 1, 1),    # the tail: one trial left, the other slot's core is lent to it
    (8, 8, 1, 4, 1, 3),
    (8, 8, 2, 4, 2, 2),    # two slots of 2 CPUs idle, shared by the two trials left
    (8, 8, 3, 4, 1, 0),    # one idle core among three trials: no thread to share evenly
    (8, 8, 0, 2, 1, 0),
])
def test_spare_threads(total, created, live, slots, cpus, extra):
    assert spare_threads(total, created, live, slots, cpus) == extra


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def trial(status):
    return SimpleNamespace(status=status)


def test_a_trial_reads_what_the_driver_lends(local_ray):
    cb = SpareCPUs("exp-a", max_concurrent=2, cpus_per_trial=1)
    cb.setup(total_num_samples=3)
    extra = ExtraThreads("exp-a")
    a, b, c = trial("RUNNING"), trial("RUNNING"), trial("PENDING")
    cb.on_trial_start(0, [a, b], b)
    assert extra() == 0
    a.status = "TERMINATED"
    cb.on_trial_complete(0, [a, b, c], a)  # c is about to take a's slot
    assert extra() == 0
    b.status = "TERMINATED"
    cb.on_trial_complete(0, [a, b, c], b)  # c trains alone: the idle slot's core is its
    assert extra() == 1
    assert ExtraThreads("another-experiment")() == 0  # nothing lent to other searches


def test_a_training_trial_takes_and_gives_back_lent_threads_between_steps(local_ray):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        cb = SpareCPUs("exp-c", max_concurrent=2, cpus_per_trial=1)
        cb.setup(total_num_samples=2)
        lent = LentThreads("exp-c", own=1, every=3600.0)
        a, b = trial("TERMINATED"), trial("RUNNING")
        cb.on_trial_complete(0, [a, b], a)  # b trains alone
        lent(1, 5, None)  # a step in the middle of an epoch
        assert torch.get_num_threads() == 2
        cb.on_trial_start(0, [a, b, trial("RUNNING")], b)  # a slot busy again: nothing to lend
        lent(1, 6, None)
        assert torch.get_num_threads() == 2  # not asked again within `every` seconds
        lent._next = 0.0
        lent(1, 7, None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_callback_pickles_without_its_actor(local_ray):
    import pickle

    cb = SpareCPUs("exp-b", 2, 1)
    cb.setup(total_num_samples=1)
    again = pickle.loads(pickle.dumps(cb))  # Tune saves its callbacks in the experiment state
    assert again._actor is None and again.max_concurrent == 2
