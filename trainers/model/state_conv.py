"""The 1x1 convolution over a GUNN state that is never built, and its gradients, in place: the
part of Algorithm 1 (`trainers.model.gunn_layer`) that reads the whole state.

Before segment i's update (channels [a, b)) the state is ``cat(y[:, :a], x[:, a:])``: the
segments before it already updated (the layer output y), the rest as they came in (the input
x). Backward of Algorithm 1 needs, per segment, that state's 1x1 conv (recompute mode), the
conv's input gradient added into the running gradient g, and its weight gradient. Written as
matrix products on the two pieces this needs no N-channel temporary at all: no rebuilt state,
no full-size input-gradient tensor to add afterwards (torch's ``conv2d_input`` returns one),
which is what kept the `keep` mode's peak above SUNN's. torch has no conv that reads a tensor
made of two others or accumulates into its output, hence these few lines.

NCHW tensors are handled as [B, C, H*W] batches of matrices, channels_last ones as one
[B*H*W, C] matrix; both are views, no copies of y, x or g are made.
"""

from __future__ import annotations

import torch


def _layout(t: torch.Tensor) -> str | None:
    if t.is_contiguous():
        return "nchw"
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return None


def _rows(t: torch.Tensor, layout: str) -> torch.Tensor:
    """A view of t as matrices with channels on one axis: [B, C, HW] or [BHW, C]."""
    if layout == "nchw":
        return t.flatten(2)
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def memory_format_of(y: torch.Tensor) -> torch.memory_format:
    """The layout `state_conv_backward` needs its running gradient in, for a state like y."""
    return torch.channels_last if _layout(y) == "nhwc" else torch.contiguous_format


def _as_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    fmt = torch.contiguous_format if layout == "nchw" else torch.channels_last
    return t.contiguous(memory_format=fmt)


def state_conv(y: torch.Tensor, x: torch.Tensor, a: int, weight: torch.Tensor,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """``conv2d(cat(y[:, :a], x[:, a:]), weight)`` for a 1x1 ``weight`` [co, N, 1, 1].

    Computed in `dtype` (default: y's), laid out like y.
    """
    dtype = dtype or y.dtype
    layout = _layout(y) or "nchw"
    y, x = _as_layout(y, layout), _as_layout(x, layout)
    B, N, H, W = y.shape
    w = weight.flatten(1).to(dtype)  # [co, N]
    co = w.shape[0]
    Y, X = _rows(y, layout), _rows(x, layout)
    if layout == "nchw":
        out = torch.matmul(w[:, a:], X[:, a:].to(dtype))  # [B, co, HW]
        if a:
            out.baddbmm_(w[:, :a].expand(B, co, a), Y[:, :a].to(dtype))
        return out.view(B, co, H, W)
    out = X[:, a:].to(dtype) @ w[:, a:].t()  # [BHW, co]
    if a:
        out.addmm_(Y[:, :a].to(dtype), w[:, :a].t())
    return out.view(B, H, W, co).permute(0, 3, 1, 2)


def state_conv_backward(y: torch.Tensor, x: torch.Tensor, a: int, weight: torch.Tensor,
                        grad_out: torch.Tensor, grad_state: torch.Tensor) -> torch.Tensor:
    """Gradients of `state_conv` for ``grad_out`` [B, co, H, W].

    Adds the input gradient into ``grad_state`` in place (it must be laid out like y) and
    returns the weight gradient, shaped like ``weight``, in grad_out's dtype.
    """
    layout = _layout(y) or "nchw"
    if _layout(grad_state) != layout:
        raise ValueError("grad_state must have the memory layout of y")
    y, x = _as_layout(y, layout), _as_layout(x, layout)
    B, N = y.shape[:2]
    dt = grad_out.dtype
    w = weight.flatten(1)
    co = w.shape[0]
    Y, X, G = _rows(y, layout), _rows(x, layout), _rows(grad_state, layout)
    go = _rows(_as_layout(grad_out, layout), layout)  # [B, co, HW] or [BHW, co]
    gw = torch.empty(co, N, dtype=dt, device=grad_out.device)
    wg = w.to(grad_state.dtype)
    if layout == "nchw":
        G.baddbmm_(wg.t().expand(B, N, co), go.to(grad_state.dtype))
        # The weight gradient transposed, [N, co] = sum_b state_b @ go_b^T: with the state's
        # rows contiguous in HW this product ran 1.4x faster than go_b @ state_b^T on this
        # VM's CPU at batch 32 (both threads, measured 2026-11-30; the GEMM reads the state
        # along its rows instead of across them).
        gw_t = gw.t()
        if a:
            torch.sum(torch.bmm(Y[:, :a].to(dt), go.transpose(1, 2)), 0, out=gw_t[:a])
        torch.sum(torch.bmm(X[:, a:].to(dt), go.transpose(1, 2)), 0, out=gw_t[a:])
    else:
        G.addmm_(go.to(grad_state.dtype), wg)
        if a:
            torch.mm(go.t(), Y[:, :a].to(dt), out=gw[:, :a])
        torch.mm(go.t(), X[:, a:].to(dt), out=gw[:, a:])
    return gw.view(weight.shape)
