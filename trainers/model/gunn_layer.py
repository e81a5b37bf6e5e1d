"""GUNN, the paper's gradually updated layer, and its Algorithm 1 (memory-efficient backward).

GUNN updates the P segments one after another, each reading the state as the earlier updates
left it (the paper's Eq. 3-4); SUNN (`trainers.model.sunn_layer`) computes every segment from
the layer input. Both hold the same modules under the same names (`trainers.model.segmented`).

GUNN training memory (the paper's Algorithm 1): because every segment is updated exactly once,
the value a segment held before its update is its value in the layer input. Keeping only the
input x and the output y therefore gives backward the state before any update i: it is
``cat(y[:, :a], x[:, a:])``, read in its two pieces (`trainers.model.state_conv`), never copied.
Backward walks the segments in reverse. Modes:

- ``recompute``: forward keeps no unit activations; backward recomputes one segment at a time.
  Least memory, about one extra forward of compute.
- ``keep``: each segment keeps its own activations as autograd normally would, except the one
  tensor it reads (the N-channel state); the first 1x1 convs' gradients are taken against the
  state's two pieces. Memory about SUNN's, no extra forward (the authors' way).
- ``naive``: a fresh copy of the state per segment; the reference the other two are tested on.

``residual=False`` (the paper's NoRes ablation, `SegmentUpdate`) keeps all of this: Algorithm 1
relies on each segment being updated once, not on the update being residual. Without the add a
segment's new value does not depend on its old one, so backward's gradient to the old value is
zero instead of the incoming one; the state's gradient is still added through the first conv.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trainers.model.segmented import SegmentedLayer
from trainers.model.spec import GUNN_MODES
from trainers.model.state_conv import memory_format_of, state_conv, state_conv_backward
from trainers.model.update_unit import SegmentUpdate


class GUNNLayer(SegmentedLayer):
    """Gradually updated layer: segment i's update reads segments < i already updated."""

    def __init__(self, N, P, K, M, projection=False, mode: str = "recompute",
                 residual: bool = True):
        super().__init__(N, P, K, M, projection, residual)
        if mode not in GUNN_MODES:
            raise ValueError(f"mode must be one of {GUNN_MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "naive":
            state = x
            for i, seg in enumerate(self.segments):
                a, b = self.bounds(i)
                state = torch.cat([state[:, :a], seg(state, a, b), state[:, b:]], 1)
            return state
        if not torch.is_grad_enabled():  # inference: nothing to save, just update in place
            y = x.clone()
            for i, seg in enumerate(self.segments):
                y[:, slice(*self.bounds(i))] = _segment_update(seg, y, x, *self.bounds(i))
            return y
        params = [p for seg in self.segments for p in seg.parameters()]
        return _GradualUpdate.apply(x, self, self.mode == "keep", *params)


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Recompute with the same normalisation as the forward pass without touching running stats.

    In training mode BN then still uses batch statistics (identical input, identical stats); in
    eval mode it uses the running statistics as before. Without this a recomputation would move
    the running statistics a second time per step.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.track_running_stats for bn in bns]
    for bn in bns:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for bn, flag in zip(bns, saved):
            bn.track_running_stats = flag


def _autocast_state(x: torch.Tensor) -> tuple[str, bool, torch.dtype]:
    dev = x.device.type
    return dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)


class _GradualUpdate(torch.autograd.Function):
    """Algorithm 1: save x and y; backward rebuilds the state before each update, in reverse.

    The only ops that read the whole N-channel state are the first unit's conv1 and the
    projection conv; they run as one fused conv outside autograd, and backward takes their
    input gradient (accumulated in place) and weight gradient against the state's two pieces. The rest of a segment's
    graph starts from their output: kept from the forward pass (`keep`) or recomputed one
    segment at a time (`recompute`, with BN statistics frozen so they move once per step).
    """

    @staticmethod
    def forward(ctx, x, layer: GUNNLayer, keep: bool, *params):
        y = x.clone()
        graphs = []
        _, ac_on, ac_dtype = ac = _autocast_state(x)
        ws = _first_conv_weights(layer)
        for i, seg in enumerate(layer.segments):
            a, b = layer.bounds(i)
            if keep:
                new, *leaves = _segment_graph(seg, y, x, a, b, ws[i])
                graphs.append((new, *leaves))
                y[:, a:b] = new.detach()
            else:
                # h0 exactly as backward will recompute it (same ops, same rounding), so the
                # recomputed graph is the forward's even under autocast.
                h0 = state_conv(y, x, a, ws[i], ac_dtype if ac_on else None)
                y[:, a:b] = _segment_from_first_conv(seg, x[:, a:b], *_split_h0(seg, h0))
        ctx.layer, ctx.graphs, ctx.autocast = layer, graphs, ac
        # keep: the segments' graphs live as long as this node's saved tensors. A backward with
        # retain_graph=True (or gradcheck) keeps both, for the next backward; one without frees
        # the saved tensors when it is done, and with them the token, whose finalizer drops the
        # graphs. (A saved-tensor hook that copies what is saved drops the token at once: the
        # graphs go and backward recomputes them, as `recompute` does, with the same result.)
        saved = (x, y)
        if keep:
            token = x.new_empty(0)
            weakref.finalize(token, graphs.clear).atexit = False
            saved += (token,)
        ctx.save_for_backward(*saved)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, y = ctx.saved_tensors[:2]
        layer: GUNNLayer = ctx.layer
        dev, ac_on, ac_dtype = ctx.autocast
        # The state segment i's update read is cat(y[:, :a], x[:, a:]); state_conv works on
        # the two pieces, so it is never rebuilt and no N-channel temporary is made.
        g = grad_y.clone(memory_format=memory_format_of(y))
        seg_grads: list[tuple] = [()] * layer.P
        ws = _first_conv_weights(layer)
        for i in reversed(range(layer.P)):
            a, b = layer.bounds(i)
            seg = layer.segments[i]
            first, rest = _first_conv_params(seg), _rest_params(seg)
            w = ws[i]
            keep = bool(ctx.graphs)  # graphs kept and not yet released (see forward)
            if keep:
                new, *h0s, old = ctx.graphs[i]
            else:
                h0 = state_conv(y, x, a, w, ac_dtype if ac_on else None)
                with frozen_bn_stats(seg), torch.autocast(dev, dtype=ac_dtype, enabled=ac_on):
                    new, *h0s, old = _segment_graph_from(seg, h0, x, a, b)
            g_new = g[:, a:b].to(new.dtype, copy=True)
            k = len(h0s)
            if seg.residual:
                grads = torch.autograd.grad(new, (*h0s, old, *rest), g_new, retain_graph=keep)
                g[:, a:b] = grads[k].to(g.dtype)  # the residual path of the segment itself
                grads = grads[:k] + grads[k + 1:]
            else:  # NoRes: the new value does not read the old one; the old value's
                # gradient is only what the state's read adds below
                grads = torch.autograd.grad(new, (*h0s, *rest), g_new, retain_graph=keep)
                g[:, a:b] = 0
            # One copy joins the conv1 and projection parts; slicing a single h0 leaf instead
            # would make autograd zero-fill an h0-sized buffer per slice and add the two.
            g_h0 = grads[0] if k == 1 else torch.cat(grads[:k], 1)
            g_w = state_conv_backward(y, x, a, w, g_h0, g)  # adds the state's gradient into g
            first_grads = [gw.to(p.dtype) for gw, p in
                           zip(g_w.split([p.shape[0] for p in first]), first)]
            by_param = dict(zip(map(id, first), first_grads))
            by_param.update(zip(map(id, rest), grads[k:]))
            seg_grads[i] = tuple(by_param[id(p)] for p in seg.parameters())
        return (g, None, None, *[p for gs in seg_grads for p in gs])


def _segment_update(seg: SegmentUpdate, state: torch.Tensor, x: torch.Tensor, a: int,
                    b: int) -> torch.Tensor:
    """Segment [a, b)'s new value from `state` (no autograd); x[:, a:b] is its old value."""
    h0 = F.conv2d(state, _first_conv_weight(seg))
    return _segment_from_first_conv(seg, x[:, a:b], *_split_h0(seg, h0))


def _segment_graph(seg: SegmentUpdate, state: torch.Tensor, x: torch.Tensor, a: int, b: int,
                   w: torch.Tensor):
    """The segment's update with autograd from the fused first conv's output on.

    Returns (new value, h0 leaves, old-value leaf); the state itself is not part of the graph.
    """
    with torch.no_grad():
        h0 = F.conv2d(state, w)
    return _segment_graph_from(seg, h0, x, a, b)


def _segment_graph_from(seg: SegmentUpdate, h0: torch.Tensor, x: torch.Tensor, a: int, b: int):
    """The segment's graph from the first conv's output `h0` and its old value.

    Returns (new, conv1 leaf[, projection leaf], old leaf). The conv1 and projection parts of
    h0 are separate leaves (views of h0): slicing one h0 leaf inside the graph would make
    backward zero-fill an h0-sized buffer per slice and add them.
    """
    with torch.enable_grad():
        leaves = [h.detach().requires_grad_() for h in _split_h0(seg, h0)]
        old = x[:, a:b].detach().requires_grad_()
        new = _segment_from_first_conv(seg, old, *leaves)
    return (new, *leaves, old)


def _first_conv_params(seg: SegmentUpdate) -> list[nn.Parameter]:
    convs = [seg.units[0].conv1.weight]
    if seg.proj is not None:
        convs.append(seg.proj.conv.weight)
    return convs


def _rest_params(seg: SegmentUpdate) -> list[nn.Parameter]:
    first = set(map(id, _first_conv_params(seg)))
    return [p for p in seg.parameters() if id(p) not in first]


def _first_conv_weight(seg: SegmentUpdate) -> torch.Tensor:
    """conv1 of the first unit and the projection conv, stacked: one conv reads the state."""
    ws = _first_conv_params(seg)
    return ws[0] if len(ws) == 1 else torch.cat(ws)


def _first_conv_weights(layer: SegmentedLayer) -> list[torch.Tensor]:
    """`_first_conv_weight` of every segment, from one cat for the layer (not one per segment)."""
    ws = [w for seg in layer.segments for w in _first_conv_params(seg)]
    if len(ws) == len(layer.segments):
        return ws
    return list(torch.cat(ws).split([sum(w.shape[0] for w in _first_conv_params(seg))
                                     for seg in layer.segments]))


def _split_h0(seg: SegmentUpdate, h0: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """h0's conv1 part and, with a projection, its projection part (views)."""
    if seg.proj is None:
        return (h0,)
    width = seg.units[0].conv1.out_channels
    return h0[:, :width], h0[:, width:]


def _segment_from_first_conv(seg: SegmentUpdate, old: torch.Tensor, h1: torch.Tensor,
                             hp: torch.Tensor | None = None) -> torch.Tensor:
    """`SegmentUpdate.forward` with the state-reading convs already applied.

    h1 is the first unit's conv1 output, hp the projection conv's (with a projection).
    """
    u = seg.units[0]
    h = torch.relu(u.bn1(h1))
    h = torch.relu(u.bn2(u.conv2(h)))
    s = u.bn3(u.conv3(h))
    if seg.residual:
        s = old + s
    if seg.proj is not None:
        s = s + seg.proj.bn(hp)
    for unit in seg.units[1:]:
        s = s + unit(s) if seg.residual else unit(s)
    return s
