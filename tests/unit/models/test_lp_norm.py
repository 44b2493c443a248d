"""The l_p normalisation's hand-written backward against the textbook formula.

``LpNorm`` trains through ``_LpNormFunction`` (BN's fused kernels plus a per-channel correction); here
its output and gradients are compared, in float64, with autograd through the plain formula of
lp_norm.py's docstring, and with torch.autograd.gradcheck's finite differences."""

from __future__ import annotations

import pytest
import torch

from ics_study.config import LpConfig
from ics_study.models.lp_norm import LpNorm, _LpNormFunction

PS = [1.0, 2.0, float("inf")]


def textbook(x, weight, bias, p, eps=1e-5):
    """y = gamma (x - mean) / (n + eps) + beta, n = (mean |x|^p)^(1/p) or max |x|, per channel."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    norm = x.abs().amax(dims, keepdim=True) if p == float("inf") else x.abs().pow(p).mean(dims, keepdim=True).pow(1 / p)
    return (x - mean) / (norm + eps) * weight.view(shape) + bias.view(shape)


def inputs(shape=(6, 3, 4, 5), seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.7)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    weight = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    bias = torch.randn(c, generator=g, dtype=torch.float64)
    return x.requires_grad_(), weight.requires_grad_(), bias.requires_grad_()


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("shape,channels_last", [((6, 3, 4, 5), False), ((6, 3, 4, 5), True), ((40, 7), False)],
                         ids=["nchw", "channels_last", "linear"])
def test_output_and_gradients_equal_the_formula_in_float64(p, shape, channels_last):
    x, weight, bias = inputs(shape, channels_last=channels_last)
    y, mean, norm = _LpNormFunction.apply(x, weight, bias, p, 1e-5)
    want = textbook(x, weight, bias, p)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = torch.autograd.grad(y, (x, weight, bias), upstream)
    expected = torch.autograd.grad(want, (x, weight, bias), upstream)
    for name, a, b in zip(("x", "gamma", "beta"), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"d/d{name}")


@pytest.mark.parametrize("p", PS)
def test_gradcheck(p):
    x, weight, bias = inputs((4, 3, 3, 2), seed=2)
    assert torch.autograd.gradcheck(lambda *a: _LpNormFunction.apply(*a, p, 1e-5)[0], (x, weight, bias))


@pytest.mark.parametrize("p", PS)
def test_the_layer_trains_through_it_and_keeps_running_statistics(p):
    x, weight, bias = inputs((8, 3, 4, 4), seed=3)
    layer = LpNorm(3, p, LpConfig()).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    y = layer(x)
    torch.testing.assert_close(y, textbook(x, layer.weight, layer.bias, p))
    y.square().sum().backward()
    assert layer.weight.grad is not None and x.grad is not None
    torch.testing.assert_close(layer.running_mean, 0.1 * x.detach().mean((0, 2, 3)))


@pytest.mark.parametrize("p", PS)
def test_bf16_keeps_fp32_statistics_and_the_input_dtype(p):
    x = (torch.randn(16, 8, 4, 4) * 3 + 1).contiguous(memory_format=torch.channels_last)
    layer = LpNorm(8, p, LpConfig())
    with torch.autocast("cpu", torch.bfloat16):
        y = layer(x.bfloat16().requires_grad_())
    assert y.dtype == torch.bfloat16 and layer.running_norm.dtype == torch.float32
    torch.testing.assert_close(y.float(), textbook(x, layer.weight, layer.bias, p), rtol=0.02, atol=0.05)
    y.float().sum().backward()
    assert torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
def test_bf16_statistics_and_gradients_match_float64(p, channels_last):
    """The CPU's fast paths (BN's statistics kernel for the means, a rank-1 update for the backward's
    per-channel shift) against the formula in float64 on the same bf16 numbers."""
    x, weight, bias = (t.detach() for t in inputs((32, 6, 8, 8), seed=4, channels_last=channels_last))
    x16 = x.bfloat16().contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x16.requires_grad_()
    x64 = x16.detach().double().requires_grad_()
    y, mean, norm = _LpNormFunction.apply(x16, weight.float(), bias.float(), p, 1e-5)
    dims = (0, 2, 3)
    torch.testing.assert_close(mean.double(), x64.detach().mean(dims), rtol=2e-5, atol=1e-6)
    want = x64.detach().abs().amax(dims) if p == float("inf") else x64.detach().abs().pow(p).mean(dims).pow(1 / p)
    torch.testing.assert_close(norm.double(), want, rtol=2e-5, atol=0)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(5)) + 0.5  # a mean: the shift matters
    (got,) = torch.autograd.grad(y, x16, upstream.bfloat16())
    (expected,) = torch.autograd.grad(textbook(x64, weight, bias, p), x64, upstream.double())
    scale = expected.abs().max()
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=0.02 * scale)

