"""SUNN, the paper's simultaneously updated layer (the baseline of Tables 3-5).

Every segment's update reads the same layer input, so the P updates are independent of each
other; here they run as one grouped bottleneck (`grouped=True`) or one by one (the reference).
Same modules and computation as the GUNN layer of the same <N, P, K, M>
(`trainers.model.gunn_layer`), only the order of reading differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainers.model.segmented import SegmentedLayer, grouped_batch_norm


class SUNNLayer(SegmentedLayer):
    """Simultaneously updated layer: every segment's update reads the same input.

    ``grouped=True`` runs the P bottlenecks as one grouped bottleneck (same parameters, P times
    fewer kernel launches); ``grouped=False`` runs them one by one (the reference).
    """

    def __init__(self, N, P, K, M, projection=False, grouped: bool = True,
                 residual: bool = True):
        super().__init__(N, P, K, M, projection, residual)
        self.grouped = grouped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.grouped:
            return torch.cat([seg(x, *self.bounds(i)) for i, seg in enumerate(self.segments)], 1)
        segs = self.segments
        s = x
        for m in range(self.M):
            units = [seg.units[m] for seg in segs]
            # The first unit reads all N channels; later ones read their own segment (groups=P).
            groups = 1 if m == 0 else self.P
            h = F.conv2d(s, torch.cat([u.conv1.weight for u in units]), groups=groups)
            h = torch.relu(grouped_batch_norm(h, [u.bn1 for u in units]))
            h = F.conv2d(h, torch.cat([u.conv2.weight for u in units]), padding=1, groups=self.P)
            h = torch.relu(grouped_batch_norm(h, [u.bn2 for u in units]))
            h = F.conv2d(h, torch.cat([u.conv3.weight for u in units]), groups=self.P)
            h = grouped_batch_norm(h, [u.bn3 for u in units])
            if m == 0 and self.projection:
                p = F.conv2d(x, torch.cat([seg.proj.conv.weight for seg in segs]))
                h = h + grouped_batch_norm(p, [seg.proj.bn for seg in segs])
            s = s + h if self.residual else h
        return s

