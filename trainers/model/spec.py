"""Plain-data architecture specs: `StageSpec` <N, P, K, M> (a layer of the paper's §5.1),
`NetworkSpec`, and the paper's models by name (Tables 1-2: GUNN-15 and GUNN-24 for CIFAR,
GUNN-18 and Wide-GUNN-18 for ImageNet, each with its SUNN).

No torch here: the search driver validates spaces, samples architectures and prices them with the
analytic cost model (`trainers.model.cost`) from these specs alone, without paying for importing torch
(1.3-1.9 s on the 2-core CPU VM). `trainers.model.network` builds modules from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, Literal, get_args

# The allowed values of an architecture's settings, defined once: `trainers.config.ModelConfig`
# takes these types for its fields (a YAML config's errors), `NetworkSpec` checks the same lists
# for callers that build a spec from plain data.
# Algorithm 1 ("recompute", "keep") and plain autograd through the sequential updates ("naive").
GunnMode = Literal["recompute", "keep", "naive"]
GUNN_MODES = get_args(GunnMode)
Family = Literal["gunn", "sunn"]
Stem = Literal["cifar", "imagenet"]
# Between two layers: conv1x1 + BN + ReLU then 2x2 average pooling (the paper's text, the authors'
# CIFAR models), or the pooling first (the authors' ImageNet models): same parameters, and the
# conv at a quarter of the pixels. A spec without one takes its stem's, as in the authors' code.
Transition = Literal["conv_pool", "pool_conv"]
TRANSITIONS = get_args(Transition)
DEFAULT_TRANSITION = {"cifar": "conv_pool", "imagenet": "pool_conv"}


def check_shape(N: int, P: int) -> None:
    """The one rule of a layer's shape: N channels split into P segments of n = N / P.

    ValueError naming both when P does not divide N. Every place that builds, prices or
    validates a layer asks this function (the search's sampler uses `divides`).
    """
    if not divides(P, N):
        raise ValueError(f"N={N} is not divisible by P={P}")


def divides(P: int, N: int) -> bool:
    return N % P == 0


@dataclass(frozen=True)
class StageSpec:
    """One GUNN/SUNN layer <N, P, K, M>: N channels, P segments, bottleneck factor K, M units."""

    N: int
    P: int
    K: int = 2
    M: int = 1

    @property
    def n(self) -> int:
        return self.N // self.P


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that fixes a network's architecture; plain data, YAML-serialisable."""

    stages: tuple[StageSpec, ...]
    family: Family = "gunn"
    stem: Stem = "cifar"
    stem_channels: int = 64
    head_channels: int | None = None  # 1x1 conv before the global pool (CIFAR models)
    projection: bool = True  # the CIFAR models' per-segment projection shortcut
    residual: bool = True  # false: the paper's NoRes ablation (no identity add in the updates)
    num_classes: int = 10
    in_channels: int = 3
    transition: Transition | None = None  # None: DEFAULT_TRANSITION of the stem

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, StageSpec) else StageSpec(**s) if isinstance(s, dict) else StageSpec(*s)
            for s in self.stages))
        if not self.stages:
            raise ValueError("stages: at least one stage is required")
        for i, s in enumerate(self.stages):
            if min(s.N, s.P, s.K, s.M) < 1:
                raise ValueError(f"stages[{i}]: N, P, K, M must be >= 1, got {s}")
            try:
                check_shape(s.N, s.P)
            except ValueError as e:
                raise ValueError(f"stages[{i}]: {e}") from None
        for name, allowed in (("family", get_args(Family)), ("stem", get_args(Stem))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be true or false, got {self.residual!r}")
        if self.transition is None:
            object.__setattr__(self, "transition", DEFAULT_TRANSITION[self.stem])
        if self.transition not in TRANSITIONS:
            raise ValueError(f"transition must be one of {TRANSITIONS}, got {self.transition!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        return cls(**d)

    def with_family(self, family: Family) -> "NetworkSpec":
        return replace(self, family=family)


# --- the paper's models -------------------------------------------------------------------------

def _cifar(stages, head, **kw) -> NetworkSpec:
    return NetworkSpec(stages=tuple(StageSpec(*s) for s in stages), stem="cifar",
                       head_channels=head, projection=True, **kw)


def _imagenet(stages, **kw) -> NetworkSpec:
    kw.setdefault("num_classes", 1000)
    return NetworkSpec(stages=tuple(StageSpec(*s) for s in stages), stem="imagenet",
                       head_channels=None, projection=False, **kw)


def gunn15_spec(num_classes: int = 10, family: Family = "gunn") -> NetworkSpec:
    """GUNN-15 (CIFAR): {240,20,2,1}, {300,25,2,1}, {360,30,2,1}, head 360."""
    return _cifar([(240, 20, 2, 1), (300, 25, 2, 1), (360, 30, 2, 1)], 360,
                  num_classes=num_classes, family=family)


def gunn24_spec(num_classes: int = 10, family: Family = "gunn") -> NetworkSpec:
    """GUNN-24 (CIFAR): {720,20,3,2}, {900,25,3,2}, {1080,30,3,2}, head 1080."""
    return _cifar([(720, 20, 3, 2), (900, 25, 3, 2), (1080, 30, 3, 2)], 1080,
                  num_classes=num_classes, family=family)


def gunn18_spec(num_classes: int = 1000, family: Family = "gunn") -> NetworkSpec:
    """GUNN-18 (ImageNet): {400,10,2,1}, {800,20,2,1}, {1600,40,2,1}, {2000,50,2,1}."""
    return _imagenet([(400, 10, 2, 1), (800, 20, 2, 1), (1600, 40, 2, 1), (2000, 50, 2, 1)],
                     num_classes=num_classes, family=family)


def wide_gunn18_spec(num_classes: int = 1000, family: Family = "gunn") -> NetworkSpec:
    """Wide-GUNN-18 (ImageNet): {1200,30,2,1}, {1600,40,2,1}, {2000,50,2,1}, {2000,50,2,1}."""
    return _imagenet([(1200, 30, 2, 1), (1600, 40, 2, 1), (2000, 50, 2, 1), (2000, 50, 2, 1)],
                     num_classes=num_classes, family=family)


MODEL_REGISTRY: dict[str, Callable[[int], NetworkSpec]] = {
    "gunn15": lambda c=10: gunn15_spec(c, "gunn"),
    "sunn15": lambda c=10: gunn15_spec(c, "sunn"),
    "gunn24": lambda c=10: gunn24_spec(c, "gunn"),
    "sunn24": lambda c=10: gunn24_spec(c, "sunn"),
    "gunn18": lambda c=1000: gunn18_spec(c, "gunn"),
    "sunn18": lambda c=1000: gunn18_spec(c, "sunn"),
    "wide_gunn18": lambda c=1000: wide_gunn18_spec(c, "gunn"),
    "wide_sunn18": lambda c=1000: wide_gunn18_spec(c, "sunn"),
}


def check_model_name(name: str) -> None:
    """ValueError unless ``name`` is a registered model (a config's `model.name` too)."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")


def model_spec(name: str, num_classes: int | None = None) -> NetworkSpec:
    """The spec of a registered paper model."""
    check_model_name(name)
    factory = MODEL_REGISTRY[name]
    return factory() if num_classes is None else factory(num_classes)
