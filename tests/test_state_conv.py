"""trainers.model.state_conv: the 1x1 conv over cat(y[:, :a], x[:, a:]) and its in-place gradients
equal autograd through the built state, in both memory layouts."""

import pytest
import torch
import torch.nn.functional as F

from trainers.model.state_conv import state_conv, state_conv_backward

FORMATS = [torch.contiguous_format, torch.channels_last]


def tensors(fmt, B=3, N=12, co=5, H=4, W=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    y, x = mk(B, N, H, W), mk(B, N, H, W)
    return (y.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt),
            mk(co, N, 1, 1), mk(B, co, H, W), mk(B, N, H, W).contiguous(memory_format=fmt))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("a", [0, 4, 11])
def test_state_conv_and_gradients_equal_autograd_through_the_built_state(fmt, a):
    y, x, w, g_out, g_state = tensors(fmt)
    state = torch.cat([y[:, :a], x[:, a:]], 1).requires_grad_()
    wr = w.clone().requires_grad_()
    ref = F.conv2d(state, wr)
    ref.backward(g_out)

    out = state_conv(y, x, a, w)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref.detach(), rtol=0, atol=1e-12)
    assert out.is_contiguous(memory_format=fmt)

    before = g_state.clone()
    gw = state_conv_backward(y, x, a, w, g_out, g_state)
    torch.testing.assert_close(gw, wr.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_state, before + state.grad, rtol=0, atol=1e-12)  # accumulated
    assert g_state.is_contiguous(memory_format=fmt)  # in place, layout kept


def test_state_conv_computes_in_the_requested_dtype():
    y, x, w, _, _ = tensors(torch.contiguous_format)
    out = state_conv(y.float(), x.float(), 4, w.float(), dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    ref = F.conv2d(torch.cat([y[:, :4], x[:, 4:]], 1), w)
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=5e-2)


def test_backward_refuses_a_gradient_in_another_layout():
    y, x, w, g_out, g_state = tensors(torch.contiguous_format)
    with pytest.raises(ValueError, match="layout"):
        state_conv_backward(y, x, 2, w, g_out, g_state.contiguous(memory_format=torch.channels_last))
