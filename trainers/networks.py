"""Whole GUNN/SUNN networks built from a plain spec, and the paper's models by name.

CIFAR layout (GUNN-15, Table 1 and the authors' code):
    conv3x3 3->stem, BN, ReLU; conv1x1 stem->N1, BN, ReLU; layer(N1)
    [conv1x1 N_i->N_{i+1}, BN, ReLU, avgpool 2; layer(N_{i+1})] ...
    conv1x1 N_last->head, BN, ReLU; global avgpool; fc
ImageNet layout (GUNN-18): conv7x7/2 3->64, BN, ReLU, maxpool 3x3/2; conv1x1 64->N1, BN, ReLU;
layers and transitions as above; no head conv; global avgpool; fc.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Literal

import torch
from torch import nn

from trainers.layers import GUNN_MODES, GUNNLayer, SUNNLayer

Family = Literal["gunn", "sunn"]
Stem = Literal["cifar", "imagenet"]


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
    num_classes: int = 10
    in_channels: int = 3

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, StageSpec) else StageSpec(**s) if isinstance(s, dict) else StageSpec(*s)
            for s in self.stages))
        if not self.stages:
            raise ValueError("stages: at least one stage is required")
        for i, s in enumerate(self.stages):
            if min(s.N, s.P, s.K, s.M) < 1:
                raise ValueError(f"stages[{i}]: N, P, K, M must be >= 1, got {s}")
            if s.N % s.P:
                raise ValueError(f"stages[{i}]: N={s.N} is not divisible by P={s.P}")
        if self.family not in ("gunn", "sunn"):
            raise ValueError(f"family must be 'gunn' or 'sunn', got {self.family!r}")
        if self.stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkSpec":
        return cls(**d)

    def with_family(self, family: Family) -> "NetworkSpec":
        return replace(self, family=family)


class GUNNNet(nn.Module):
    """A network of GUNN or SUNN layers separated by transitions, per `NetworkSpec`."""

    def __init__(self, spec: NetworkSpec, gunn_mode: str = "recompute"):
        super().__init__()
        self.spec = spec
        c = spec.stem_channels
        first = spec.stages[0].N
        if spec.stem == "cifar":
            stem = [*conv_bn_relu(spec.in_channels, c, 3), *conv_bn_relu(c, first, 1)]
        else:
            stem = [*conv_bn_relu(spec.in_channels, c, 7, stride=2),
                    nn.MaxPool2d(3, stride=2, padding=1), *conv_bn_relu(c, first, 1)]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i, s in enumerate(spec.stages):
            if i > 0:
                prev = spec.stages[i - 1].N
                self.transitions.append(nn.Sequential(*conv_bn_relu(prev, s.N, 1), nn.AvgPool2d(2)))
            if spec.family == "gunn":
                layer = GUNNLayer(s.N, s.P, s.K, s.M, spec.projection, mode=gunn_mode)
            else:
                layer = SUNNLayer(s.N, s.P, s.K, s.M, spec.projection)
            self.stages.append(layer)
        last = spec.stages[-1].N
        if spec.head_channels:
            self.head = nn.Sequential(*conv_bn_relu(last, spec.head_channels, 1))
            last = spec.head_channels
        else:
            self.head = nn.Identity()
        self.fc = nn.Linear(last, spec.num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, layer in enumerate(self.stages):
            if i > 0:
                x = self.transitions[i - 1](x)
            x = layer(x)
        x = self.head(x)
        return self.fc(torch.flatten(x.mean((2, 3)), 1))


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def init_weights(model: nn.Module) -> None:
    """The authors' init: conv N(0, sqrt(2 / (k*k*out))), BN weight 1 bias 0, linear bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


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


def model_spec(name: str, num_classes: int | None = None) -> NetworkSpec:
    """The spec of a registered paper model."""
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")
    factory = MODEL_REGISTRY[name]
    return factory() if num_classes is None else factory(num_classes)


def build_model(name_or_spec: str | NetworkSpec | dict, num_classes: int | None = None,
                gunn_mode: str = "recompute") -> GUNNNet:
    """Build a registered model by name, or any valid `NetworkSpec` (or its dict form)."""
    if isinstance(name_or_spec, str):
        spec = model_spec(name_or_spec, num_classes)
    else:
        spec = name_or_spec if isinstance(name_or_spec, NetworkSpec) else NetworkSpec.from_dict(name_or_spec)
        if num_classes is not None and num_classes != spec.num_classes:
            spec = replace(spec, num_classes=num_classes)
    if gunn_mode not in GUNN_MODES:
        raise ValueError(f"gunn_mode must be one of {GUNN_MODES}, got {gunn_mode!r}")
    return GUNNNet(spec, gunn_mode=gunn_mode)
