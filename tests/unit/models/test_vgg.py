"""VGG shapes, layer numbering and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ics_study.config import ModelConfig
from ics_study.models import build_model
from ics_study.models.blocks import Block
from ics_study.models.noisy_bn import NoisyBatchNorm

CONVS = {11: 8, 13: 10, 16: 13, 19: 16}


@pytest.mark.parametrize("depth", sorted(CONVS))
@pytest.mark.parametrize("norm", ["none", "batch", "noisy_batch"])
def test_shapes_and_layer_count(depth, norm):
    model = build_model(ModelConfig(name="t", depth=depth, width=0.125, norm=norm))
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert len(model.blocks) == CONVS[depth] + 1  # convs + the output Linear
    assert isinstance(model.layer(CONVS[depth] + 1), nn.Linear)
    with pytest.raises(IndexError, match="layers #1..#"):
        model.layer(CONVS[depth] + 2)


def test_vgg16_channels_and_head():
    model = build_model(ModelConfig(name="t", depth=16, width=1.0, norm="batch"))
    widths = [b.layer.out_channels for b in model.blocks[:-1]]
    assert widths == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    head = model.layer(14)
    assert (head.in_features, head.out_features) == (512, 10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    narrow = build_model(ModelConfig(name="t", depth=16, width=0.25, norm="none"))
    assert narrow.layer(14).in_features == 128 and narrow.layer(1).layer.out_channels == 16


def test_norm_placement_conv_bn_relu():
    model = build_model(ModelConfig(name="t", depth=11, width=0.125, norm="noisy_batch"))
    block = model.layer(3)
    assert isinstance(block, Block) and isinstance(block.layer, nn.Conv2d)
    assert isinstance(block.norm, NoisyBatchNorm) and isinstance(block.act, nn.ReLU)
    assert sum(isinstance(m, NoisyBatchNorm) for m in model.modules()) == 8
    plain = build_model(ModelConfig(name="t", depth=11, width=0.125, norm="none"))
    assert isinstance(plain.layer(3).norm, nn.Identity)


def test_glorot_uniform_weights_zero_biases():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="t", depth=16, width=0.5, norm="batch"))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = math.sqrt(6 / (fan_in + fan_out))
            w = m.weight.detach()
            assert w.abs().max() <= bound + 1e-6
            if w.numel() > 1000:  # uniform on [-b, b] has variance b^2 / 3
                assert abs(w.var().item() / (bound**2 / 3) - 1) < 0.1
            assert torch.all(m.bias == 0)
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_hidden_head_layers_are_numbered_blocks():
    model = build_model(ModelConfig(name="t", depth=11, width=0.125, norm="batch", head_hidden=[32]))
    assert len(model.blocks) == 8 + 2 and isinstance(model.layer(9), Block)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_conv_bias_before_bn_is_cancelled_by_it(norm):
    """Why ``model.conv_bias=false`` (bench.py's "nobias" variant) is the same network when a BN
    follows the conv: in training mode BN subtracts each channel's batch mean, bias included, so the
    outputs and every other gradient are unchanged and the bias's own gradient is zero. Without BN
    the bias does count (the control)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="t", depth=11, width=0.125, norm=norm)).double()
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))

    def run():
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach(), model.layer(3).layer.weight.grad.clone(), model.layer(3).layer.bias.grad.clone()

    zero = run()
    with torch.no_grad():
        for block in model.blocks[:-1]:
            block.layer.bias.uniform_(-1, 1)
    shifted = run()
    if norm == "batch":
        torch.testing.assert_close(shifted[0], zero[0], rtol=1e-10, atol=0)
        torch.testing.assert_close(shifted[1], zero[1], rtol=1e-8, atol=1e-12)
        assert zero[2].abs().max() < 1e-12 and shifted[2].abs().max() < 1e-12
    else:
        assert abs(shifted[0] - zero[0]) > 1e-3 and zero[2].abs().max() > 1e-6


def test_without_conv_bias_a_seed_draws_the_same_weights():
    def weights(bias: bool):
        torch.manual_seed(3)
        model = build_model(ModelConfig(name="t", depth=11, width=0.125, norm="batch", conv_bias=bias))
        return {k: v for k, v in model.state_dict().items() if not k.endswith("layer.bias")}, model

    (with_bias, a), (without, b) = weights(True), weights(False)
    assert all(block.layer.bias is None for block in b.blocks[:-1]) and a.blocks[0].layer.bias is not None
    assert with_bias.keys() == without.keys()
    for k in with_bias:
        torch.testing.assert_close(with_bias[k], without[k], rtol=0, atol=0)
