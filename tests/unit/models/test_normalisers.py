"""The normalisers beyond the paper against their textbook definitions on hand-made tensors, in
training and evaluation mode, for conv (N, C, H, W; channels-last too) and linear (N, C) inputs:
torch.nn.functional where it has the operation, the formula written out where it has not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ics_study.config import ModelConfig
from ics_study.models import build_model
from ics_study.models.batch_parts import PartialBatchNorm
from ics_study.models.group_norm import WS_EPS, GroupNorm, WSConv2d, groups_for
from ics_study.models.norms import NORMS, build_norm

C = 6
GAMMA = torch.tensor([1.0, 2.0, 0.5, 1.5, -1.0, 3.0])
BETA = torch.tensor([0.0, 1.0, -1.0, 0.5, 2.0, -0.3])


def hand_made(shape=(10, C, 5, 4), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.arange(1, C + 1, dtype=torch.float32).view(1, C, *([1] * (len(shape) - 2)))
    return torch.randn(shape, generator=g) * scale + 3 * scale  # channels with their own mean and spread


def inputs() -> list[torch.Tensor]:
    x = hand_made()
    return [x, x.contiguous(memory_format=torch.channels_last), hand_made((40, C))]


def with_affine(layer):
    with torch.no_grad():
        layer.weight.copy_(GAMMA)
        layer.bias.copy_(BETA)
    return layer


def per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((1, -1) + (1,) * (like.dim() - 2))


def affine(y: torch.Tensor) -> torch.Tensor:
    return y * per_channel(GAMMA, y) + per_channel(BETA, y)


def dims(x):
    return (0,) if x.dim() == 2 else (0, 2, 3)


@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_layer_norm_is_layer_norm_over_everything_but_the_batch_then_a_per_channel_affine(x):
    layer = with_affine(build_norm("layer", C, ModelConfig(name="t")))
    want = affine(F.layer_norm(x, x.shape[1:], eps=1e-5))
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(layer.eval()(x), want)  # no batch statistics: the same in evaluation


@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_group_norm_normalises_each_group_of_each_sample(x):
    layer = with_affine(GroupNorm(C, 3, eps=1e-5))
    groups = x.reshape(x.shape[0], 3, -1) if x.dim() == 2 else x.contiguous().reshape(x.shape[0], 3, -1)
    var, mean = torch.var_mean(groups, dim=2, keepdim=True, correction=0)
    want = affine(((groups - mean) / torch.sqrt(var + 1e-5)).reshape(x.shape))
    torch.testing.assert_close(layer(x), want)
    torch.testing.assert_close(F.group_norm(x, 3, GAMMA, BETA, 1e-5), want)
    torch.testing.assert_close(layer.eval()(x), want)


def test_group_count_is_the_largest_divisor_at_most_the_setting():
    assert [groups_for(c, 32) for c in (16, 32, 48, 64, 128, 6)] == [16, 32, 24, 32, 32, 6]
    assert groups_for(64, 1) == 1 and groups_for(64, 10_000) == 64  # LayerNorm-like, InstanceNorm-like
    model = build_model(ModelConfig(name="t", width=0.25, norm="group", groups=8))
    assert [b.norm.num_groups for b in model.blocks[:-1]] == [8] * 13


def test_weight_standardised_conv_standardises_each_output_channel_and_trains_the_raw_weight():
    conv = WSConv2d(C, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(5).add_(torch.arange(4.0).view(4, 1, 1, 1))
    w = conv.weight.detach().double()  # the formula in float64
    flat = w.reshape(4, -1)
    mean, var = flat.mean(1), flat.var(1, unbiased=False)
    w_hat = ((flat - mean[:, None]) / torch.sqrt(var[:, None] + WS_EPS)).view_as(w)
    torch.testing.assert_close(conv.standardized_weight().double(), w_hat, rtol=1e-6, atol=1e-6)
    x = hand_made((2, C, 5, 5))
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.standardized_weight(), conv.bias, padding=1), rtol=0, atol=0)
    s = conv.standardized_weight().reshape(4, -1)
    torch.testing.assert_close(s.mean(1), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.var(1, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    conv(x).square().sum().backward()
    assert isinstance(conv.weight, torch.nn.Parameter) and conv.weight.grad.abs().sum() > 0
    model = build_model(ModelConfig(name="t", width=0.25, norm="ws_group"))
    assert all(isinstance(b.layer, WSConv2d) for b in model.blocks[:-1])
    assert not any(isinstance(b.layer, WSConv2d) for b in build_model(ModelConfig(name="t", norm="group")).blocks[:-1])


@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_centring_only_bn(x):
    layer = with_affine(PartialBatchNorm(C, "center"))
    mean = x.mean(dims(x))
    # BN's kernel computes x gamma - mu gamma (+ beta): its rounding is that of x gamma, not of the
    # centred output, so the tolerance is a few ulps of |x gamma| (these channels' means are 3 spreads)
    ulps = 8 * torch.finfo(torch.float32).eps * (x.abs() * per_channel(GAMMA.abs(), x)).max().item()
    torch.testing.assert_close(layer(x), affine(x - per_channel(mean, x)), rtol=0, atol=ulps)
    torch.testing.assert_close(layer.running_mean, 0.1 * mean)
    layer.eval()
    torch.testing.assert_close(layer(x), affine(x - per_channel(0.1 * mean, x)))


@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_scaling_only_bn(x):
    layer = with_affine(PartialBatchNorm(C, "scale"))
    var = x.var(dims(x), unbiased=False)
    torch.testing.assert_close(layer(x), affine(x / per_channel(torch.sqrt(var + 1e-5), x)))
    n = x.numel() // C
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * var * n / (n - 1))  # BN's unbiased update
    layer.eval()
    torch.testing.assert_close(layer(x), affine(x / per_channel(torch.sqrt(layer.running_var + 1e-5), x)))


@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_running_statistics_bn_normalises_with_them_in_training_and_updates_them_as_bn_does(x):
    layer = with_affine(PartialBatchNorm(C, "running"))
    bn = with_affine(torch.nn.BatchNorm2d(C) if x.dim() == 4 else torch.nn.BatchNorm1d(C))
    with torch.no_grad():
        for m in (layer, bn):
            m.running_mean.copy_(torch.linspace(-1, 1, C))
            m.running_var.copy_(torch.linspace(0.5, 4, C))
    before = F.batch_norm(x, layer.running_mean.clone(), layer.running_var.clone(), GAMMA, BETA, False, 0.0, 1e-5)
    torch.testing.assert_close(layer(x), before)  # the statistics before this batch's update
    bn(x)  # BN's own running update from the same batch
    torch.testing.assert_close(layer.running_mean, bn.running_mean)
    torch.testing.assert_close(layer.running_var, bn.running_var)
    x_grad = x.clone().requires_grad_()
    layer(x_grad).sum().backward()  # no gradient through the statistics: dy/dx = gamma / sqrt(var_R + eps)
    torch.testing.assert_close(x_grad.grad, per_channel(GAMMA / torch.sqrt(_var_before(layer, x) + 1e-5), x).expand_as(x))
    layer.eval()
    torch.testing.assert_close(layer(x), F.batch_norm(x, layer.running_mean, layer.running_var, GAMMA, BETA,
                                                      False, 0.0, 1e-5))


def _var_before(layer, x):
    """The running variance the last training forward normalised with (before its own update)."""
    n = x.numel() // C
    return (layer.running_var - 0.1 * x.var(dims(x), unbiased=False) * n / (n - 1)) / 0.9


def test_every_registered_norm_builds_a_vgg_that_runs_both_ways():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for norm in NORMS:
        model = build_model(ModelConfig(name="t", width=0.125, norm=norm))
        for mode in (model.train(), model.eval()):
            assert torch.isfinite(mode(x)).all(), norm


def _part_formula(x, part, gamma, beta, eps=1e-5):
    """Centring or scaling only, written out: autograd differentiates through the batch statistics."""
    d, shape = dims(x), (1, -1) + (1,) * (x.dim() - 2)
    y = x - x.mean(d, keepdim=True) if part == "center" else x / torch.sqrt(x.var(d, unbiased=False, keepdim=True) + eps)
    return y * gamma.view(shape) + beta.view(shape)


@pytest.mark.parametrize("part", ["center", "scale"])
@pytest.mark.parametrize("x", inputs(), ids=["nchw", "nhwc", "linear"])
def test_batch_parts_gradients_through_their_statistics_equal_the_formula_in_float64(part, x):
    """The fused function (BN's kernels plus the statistics' dependence on x) against autograd."""
    layer = with_affine(PartialBatchNorm(C, part)).double()
    x = x.double().requires_grad_()
    y = layer(x)
    want = _part_formula(x, part, layer.weight, layer.bias)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.3
    got = torch.autograd.grad(y, (x, layer.weight, layer.bias), upstream)
    expected = torch.autograd.grad(want, (x, layer.weight, layer.bias), upstream)
    for name, a, b in zip(("x", "gamma", "beta"), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"{part}: d/d{name}")
    assert torch.autograd.gradcheck(lambda v: layer(v), (x[:4].detach().clone().requires_grad_(),))


@pytest.mark.parametrize("part", ["center", "scale"])
def test_batch_parts_in_bf16_match_float64_and_keep_the_layout(part):
    x = hand_made((32, C, 8, 8)).contiguous(memory_format=torch.channels_last)
    layer = with_affine(PartialBatchNorm(C, part))
    x16 = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        y = layer(x16)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    x64 = x16.detach().double().requires_grad_()
    want = _part_formula(x64, part, GAMMA.double(), BETA.double())
    torch.testing.assert_close(y.double(), want, rtol=0.01, atol=0.01 * want.abs().max().item())
    upstream = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)) + 0.5
    (got,) = torch.autograd.grad(y, x16, upstream.bfloat16())
    (expected,) = torch.autograd.grad(want, x64, upstream.double())
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=0.02 * expected.abs().max().item())
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("part", ["center", "scale"])
def test_twice_differentiable_batch_parts_give_the_formulas_hessian(part):
    """Inside norms.twice_differentiable() (the curvature probe) H v through a part is the formula's."""
    from ics_study.models.norms import twice_differentiable

    x = hand_made((6, C, 3, 3)).double()
    layer = with_affine(PartialBatchNorm(C, part)).double()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def hvp(f):
        xx = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(f(xx).square().sum(), xx, create_graph=True)
        return torch.autograd.grad((g * v).sum(), xx)[0]

    want = hvp(lambda xx: _part_formula(xx, part, layer.weight, layer.bias))
    with twice_differentiable():
        torch.testing.assert_close(hvp(layer), want, rtol=1e-10, atol=1e-10)
    assert PartialBatchNorm.fused
