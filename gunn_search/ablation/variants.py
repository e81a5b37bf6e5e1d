"""What an ablation trains (the paper's Table 5): the variants, the seeds, each cell's config.

The ablated config is a trial's exact training config. It trains once per variant and seed: the
variants change only `model.family` and `model.residual`, the seeds only `seed`. `seed` fixes the
initial weights (`torch.manual_seed(seed)` before the model is built; GUNN, SUNN and their NoRes
forms hold the same modules under the same names, so they start from the same weights, which
`check_pairing` checks) and the data order and augmentation (a generator seeded `seed + 1`,
independent of the model): the runs of one seed differ in the variant alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trainers.config import ModelConfig, TrainConfig, num_classes, parse_config
from trainers.model.spec import model_spec

from gunn_search.errors import SearchError, UsageError

# variant -> (model.family, model.residual)
VARIANTS = {"gunn": ("gunn", True), "sunn": ("sunn", True),
            "gunn-nores": ("gunn", False), "sunn-nores": ("sunn", False)}
LABELS = {"gunn": "GUNN", "sunn": "SUNN", "gunn-nores": "GUNN-NoRes", "sunn-nores": "SUNN-NoRes"}
DEFAULT_VARIANTS = "gunn,sunn,gunn-nores"


def parse_variants(text: str) -> list[str]:
    """`gunn,sunn,gunn-nores` -> the variants, in order; UsageError on an unknown or repeated
    name or fewer than two."""
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    for v in names:
        if v not in VARIANTS:
            raise UsageError(f"--variants: unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--variants: a variant is named twice ({text})")
    if len(names) < 2:
        raise UsageError(f"--variants: give at least two variants to compare (got {text!r})")
    return names


def base_config(cfg: TrainConfig, epochs: int | None = None, final: bool = False,
                data_dir: str | None = None) -> TrainConfig:
    """The trial's config as the ablation trains it: the model as explicit stages (a registered
    model by name fixes its family), `epochs`, the final split and the data directory when given,
    and no tracking section of its own."""
    data = cfg.model_dump(mode="json")
    data["tracking"] = None
    if cfg.model.name is not None:
        spec = model_spec(cfg.model.name, num_classes(cfg.data))
        model = ModelConfig.from_spec(spec, gunn_mode=cfg.model.gunn_mode)
        data["model"] = model.model_dump(mode="json") | {"residual": cfg.model.residual}
    if epochs is not None:
        data["epochs"] = epochs
    if final:
        data["data"]["split"] = "final"
    if data_dir is not None:
        data["data"]["data_dir"] = str(Path(data_dir).expanduser().resolve())
    return parse_config(data, "ablated config")


def seeds_of(base: TrainConfig, n: int) -> list[int]:
    """The ablation's seeds: the trial's own seed and the n - 1 after it."""
    return [base.seed + k for k in range(n)]


def cell_values(variant: str, seed: int) -> dict:
    """The dotted config paths a cell sets (and its labels), as a trial's config holds them."""
    family, residual = VARIANTS[variant]
    return {"variant": variant, "seed": seed, "model.family": family, "model.residual": residual}


def variant_config(base: TrainConfig, variant: str, seed: int) -> TrainConfig:
    """What the cell (variant, seed) trains: `base` with its family, residual and seed."""
    v = cell_values(variant, seed)
    data = base.model_dump(mode="json")
    data["model"]["family"], data["model"]["residual"] = v["model.family"], v["model.residual"]
    data["seed"] = seed
    return parse_config(data, f"{variant} seed {seed}")


def ablation_space(base: TrainConfig, variants: Sequence[str], seeds: Sequence[int],
                   cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0):
    """The ablation as a space: `base` with choices on model.family, model.residual and seed,
    so that `gunn_search.run.trainable.train_trial` trains a cell exactly as it trains a search's
    sample (`trial_config` puts the cell's values into `base`). Tune enumerates the cells."""
    import dataclasses

    from gunn_search.space import parse_space

    data = base.model_dump(mode="json", exclude={"tracking"})
    # A space selects on the validation split; a final ablation's base is put back afterwards.
    data["data"]["split"] = "search"
    fams = list(dict.fromkeys(VARIANTS[v][0] for v in variants))
    ress = list(dict.fromkeys(VARIANTS[v][1] for v in variants))
    data["model"]["family"] = {"choice": fams}
    data["model"]["residual"] = {"choice": ress}
    data["seed"] = {"choice": list(seeds)}
    # fifo: every cell trains to the end (the ablation's Tuner has no ASHA; the space says so)
    data.update(search={"num_samples": len(variants) * len(seeds), "scheduler": "fifo",
                        "max_concurrent": len(variants) * len(seeds)},
                resources={"cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial})
    space = parse_space(data, "ablation")
    return dataclasses.replace(space, base=base.model_copy(update={"tracking": None}))


def check_pairing(base: TrainConfig, variants: Sequence[str], seed: int) -> int:
    """Build every variant's model as training does (`torch.manual_seed(seed)`, then the model)
    and check they start from the same weights: every tensor of the same name and shape equal.
    Returns how many tensors were compared; SearchError if any differs."""
    import torch

    from trainers.model.network import build_model

    states = {}
    for v in variants:
        cfg = variant_config(base, v, seed)
        torch.manual_seed(seed)
        model = build_model(cfg.model.network_spec(num_classes(cfg.data)),
                            gunn_mode=cfg.model.gunn_mode)
        states[v] = model.state_dict()
    first, ref = variants[0], states[variants[0]]
    compared = 0
    for v in variants[1:]:
        for name, t in states[v].items():
            if name in ref and ref[name].shape == t.shape:
                if not torch.equal(ref[name], t):
                    raise SearchError(f"{v} and {first} do not start from the same weights with "
                                      f"seed {seed} ({name} differs); the pairing is broken")
                compared += 1
    return compared
