"""One segment's update: the paper's update unit (Figure 4), M of them stacked, and the CIFAR
models' projection shortcut (the authors' code).

`UpdateUnit` is the bottleneck 1x1 conv N -> K*n, BN, ReLU; 3x3 conv, BN, ReLU; 1x1 conv -> n, BN.
`SegmentUpdate` stacks M units (the first reads the whole state, the later ones the segment) and
adds the result back to the segment; the GUNN and SUNN layers hold one per segment.
"""

from __future__ import annotations

import torch
from torch import nn


class UpdateUnit(nn.Module):
    """Bottleneck that computes one segment's update.

    1x1 conv in_ch -> K*n, BN, ReLU; 3x3 conv K*n -> K*n, BN, ReLU; 1x1 conv K*n -> n, BN.
    No conv biases (every conv is followed by BN). ``in_ch`` is N for the first unit of a
    segment (it reads the whole state) and n for the stacked units after it.
    """

    def __init__(self, in_ch: int, n: int, K: int):
        super().__init__()
        width = K * n
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, n, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.bn3(self.conv3(h))


class Projection(nn.Module):
    """BN(1x1 conv N -> n): the CIFAR models' shortcut from the whole state to one segment.

    Not in the paper's text; the authors' code adds it and the paper's CIFAR parameter counts
    include it (see docs/paper.md).
    """

    def __init__(self, in_ch: int, n: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, n, 1, bias=False)
        self.bn = nn.BatchNorm2d(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SegmentUpdate(nn.Module):
    """Everything that updates one segment: M stacked units and the optional projection.

    Given the full N-channel ``state`` it returns the segment's new value::

        s = state[seg] + unit_1(state) [+ proj(state)]
        s = s + unit_m(s)            for m = 2..M

    so the first unit reads all N channels and the later ones the segment's n channels, which
    is what the paper's parameter counts for M = 2 (GUNN-24) require.

    ``residual=False`` is the paper's NoRes ablation (Table 5, GUNN-15-NoRes): every identity
    add above is left out (``s = unit_1(state) [+ proj(state)]``, ``s = unit_m(s)``), so the
    segment's old value is replaced, not updated. Same modules, same parameters.
    """

    def __init__(self, N: int, n: int, K: int, M: int, projection: bool, residual: bool = True):
        super().__init__()
        self.units = nn.ModuleList(UpdateUnit(N if m == 0 else n, n, K) for m in range(M))
        self.proj = Projection(N, n) if projection else None
        self.residual = residual

    def forward(self, state: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        s = self.units[0](state)
        if self.residual:
            s = state[:, start:stop] + s
        if self.proj is not None:
            s = s + self.proj(state)
        for unit in self.units[1:]:
            s = s + unit(s) if self.residual else unit(s)
        return s
