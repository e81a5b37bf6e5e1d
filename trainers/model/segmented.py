"""What GUNN and SUNN layers share (the paper's §5.1, "Channel Partitions").

A layer <N, P, K, M> holds N channels split evenly into P segments of n = N/P channels; each
segment has its own update (`trainers.model.update_unit.SegmentUpdate`: M stacked update units
and the optional projection), added back to it. `SegmentedLayer` holds those P updates under the
same module names for both families, so a SUNN state_dict loads into the GUNN of the same spec.
`grouped_batch_norm` runs the P segments' BatchNorms as one call (SUNN's grouped bottleneck).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainers.model.spec import check_shape
from trainers.model.update_unit import SegmentUpdate


class SegmentedLayer(nn.Module):
    """Shared structure of GUNN and SUNN layers: P segment updates over N channels."""

    def __init__(self, N: int, P: int, K: int, M: int, projection: bool = False,
                 residual: bool = True):
        super().__init__()
        check_shape(N, P)
        if min(N, P, K, M) < 1:
            raise ValueError(f"N, P, K, M must be positive, got {(N, P, K, M)}")
        self.N, self.P, self.K, self.M, self.n = N, P, K, M, N // P
        self.projection = projection
        self.residual = residual
        self.segments = nn.ModuleList(SegmentUpdate(N, self.n, K, M, projection, residual)
                                      for _ in range(P))

    def bounds(self, i: int) -> tuple[int, int]:
        """Channel range [a, b) of segment i."""
        return i * self.n, (i + 1) * self.n

    def extra_repr(self) -> str:
        return (f"N={self.N}, P={self.P}, K={self.K}, M={self.M}, projection={self.projection}"
                + ("" if self.residual else ", residual=False"))



def grouped_batch_norm(x: torch.Tensor, bns: list[nn.BatchNorm2d]) -> torch.Tensor:
    """Apply P BatchNorms over consecutive channel groups of x as one BatchNorm call.

    BN is per channel, so concatenating the P modules' parameters and statistics gives exactly
    their separate results; the updated running statistics are copied back to each module.
    """
    bn0 = bns[0]
    weight = torch.cat([bn.weight for bn in bns])
    bias = torch.cat([bn.bias for bn in bns])
    use_batch_stats = bn0.training or not bn0.track_running_stats
    update_stats = bn0.training and bn0.track_running_stats
    if bn0.track_running_stats:
        running_mean = torch.cat([bn.running_mean for bn in bns])
        running_var = torch.cat([bn.running_var for bn in bns])
    else:
        running_mean = running_var = None
    momentum = bn0.momentum
    if update_stats:
        with torch.no_grad():
            for bn in bns:
                bn.num_batches_tracked.add_(1)
        if momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
            momentum = 1.0 / float(bn0.num_batches_tracked)
    out = F.batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats,
                       momentum or 0.0, bn0.eps)
    if update_stats:
        sizes = [bn.num_features for bn in bns]
        with torch.no_grad():
            torch._foreach_copy_([bn.running_mean for bn in bns], list(running_mean.split(sizes)))
            torch._foreach_copy_([bn.running_var for bn in bns], list(running_var.split(sizes)))
    return out

