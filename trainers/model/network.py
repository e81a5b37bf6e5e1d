"""Whole GUNN/SUNN networks (the paper's Tables 1-2) built from a plain spec
(`trainers.model.spec`), and `build_model`.

CIFAR layout (GUNN-15, Table 1 and the authors' code):
    conv3x3 3->stem, BN, ReLU; conv1x1 stem->N1, BN, ReLU; layer(N1)
    [conv1x1 N_i->N_{i+1}, BN, ReLU, avgpool 2; layer(N_{i+1})] ...
    conv1x1 N_last->head, BN, ReLU; global avgpool; fc
ImageNet layout (GUNN-18): conv7x7/2 3->64, BN, ReLU, maxpool 3x3/2; conv1x1 64->N1, BN, ReLU;
layers and transitions, the pooling first as in the authors' gunn-18.lua (`spec.transition`:
pool_conv; conv_pool is the order above); no head conv; global avgpool; fc.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from trainers.model.gunn_layer import GUNNLayer
from trainers.model.spec import GUNN_MODES, NetworkSpec, model_spec
from trainers.model.sunn_layer import SUNNLayer


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
                conv, pool = conv_bn_relu(prev, s.N, 1), [nn.AvgPool2d(2)]
                self.transitions.append(nn.Sequential(
                    *(conv + pool if spec.transition == "conv_pool" else pool + conv)))
            if spec.family == "gunn":
                layer = GUNNLayer(s.N, s.P, s.K, s.M, spec.projection, mode=gunn_mode,
                                  residual=spec.residual)
            else:
                layer = SUNNLayer(s.N, s.P, s.K, s.M, spec.projection, residual=spec.residual)
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
