"""The search problem the efficiency benchmarks share: smoke.yaml's space on a reduced digits.

Why this problem stands in for a CIFAR search: `smoke.yaml` has the bundled spaces' shape (GUNN
stages in n-form, log lr and weight decay, momentum), and on the whole digits training set most
configurations saturate near 0.98 val_acc within a few epochs, so nothing separates them (the
2026-11-23 tie in HISTORY.md). A CIFAR search trains each trial for 30 of the paper's 300
epochs: far from saturation, with configurations points apart. Holding out 30 % of digits'
training split for validation (431 images, 0.0023 each, so one image moves the score less) and
training on half of the rest (`data.train_fraction` 0.5: 503 images), batch 32, for 12 epochs
reproduces that regime on 2 CPU cores: final val_acc spread over 0.26-0.92. (A quarter, 252
images at batch 64, left every configuration below 0.4 after 12 epochs: too few steps.) 12
epochs with the step schedule (lr / 10 from epoch 6, / 100 from 9) are the CIFAR spaces' shape.
"""

from __future__ import annotations

import copy

EPOCHS = 12
TRAIN_FRACTION = 0.5
VAL_FRACTION = 0.3
BATCH_SIZE = 32


def problem_data(train_seed: int, epochs: int = EPOCHS, schedule: str = "step",
                 space_file: str = "smoke.yaml", train_fraction: float = TRAIN_FRACTION,
                 val_fraction: float = VAL_FRACTION, batch_size: int = BATCH_SIZE,
                 gpus_per_trial: float = 0) -> dict:
    """The space file (smoke.yaml: the problem above) as a dict, set up with these epochs,
    schedule, data fractions and batch size; trials train with `train_seed`. smoke.yaml's data
    becomes the reduced digits; another space keeps its data set."""
    from gunn_search.space import load_space

    data = copy.deepcopy(load_space(space_file).data)
    data["name"] = f"{'digits_reduced' if space_file == 'smoke.yaml' else data['name']}_s{train_seed}"
    data["epochs"] = epochs
    data["batch_size"] = batch_size
    data["seed"] = train_seed
    if space_file == "smoke.yaml":
        data["data"]["name"] = "digits"
    data["data"].update(val_fraction=val_fraction, train_fraction=train_fraction)
    data["schedule"] = {**({"milestones": data["schedule"]["milestones"]}
                           if schedule == "step" and "milestones" in data.get("schedule", {})
                           else {}), "kind": schedule, "warmup_epochs": 0}
    # One CPU and no GPU per trial: two trials at a time on the 2-core machine.
    data.setdefault("resources", {}).update(cpus_per_trial=1, gpus_per_trial=gpus_per_trial)
    data.pop("budget", None)
    # smoke.yaml's demo rungs (grace 1, rf 2) are not the problem's: a search on it starts
    # from the search's own defaults (search.grace_period, reduction_factor, branch_epochs).
    for key in ("grace_period", "reduction_factor"):
        data["search"].pop(key, None)
    return data


def problem_space(train_seed: int, epochs: int = EPOCHS, schedule: str = "step", **search):
    """The problem as a parsed `Space`; `search` overrides keys of its `search` section."""
    from gunn_search.space import parse_space

    data = problem_data(train_seed, epochs, schedule)
    data["search"].update(search)
    return parse_space(data, "digits_problem")


def run_config(space, values: dict):
    """The trial config of `values` as the benchmarks train it outside Tune: one thread, on the
    CPU, no checkpoints to write."""
    from gunn_search.space import trial_config

    return trial_config(space, values).model_copy(
        update={"num_threads": 1, "device": "cpu", "out_dir": None})
