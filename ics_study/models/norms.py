"""Normalisation layers by name: ``model.norm`` picks one from ``NORMS``.

Each entry builds the layer that sits between a conv (or hidden linear) layer and its ReLU.
Add a normalisation by decorating a builder with ``@register("name")``; it then works in every
model and from the command line (``model.norm=name``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import ModelConfig
from .batch_parts import PartialBatchNorm
from .group_norm import GroupNorm
from .lp_norm import LpNorm
from .noisy_bn import NoiseOnly, NoisyBatchNorm
from .setting import setting

NormBuilder = Callable[[int, ModelConfig], nn.Module]
# layers whose fused training backward treats the batch statistics as constants (see twice_differentiable)
FUSED_STATISTICS = (LpNorm, PartialBatchNorm)
NORMS: dict[str, NormBuilder] = {}
WEIGHT_STANDARDIZED = {"ws_group"}  # norms whose network standardises its conv weights (group_norm.WSConv2d)


def register(name: str) -> Callable[[NormBuilder], NormBuilder]:
    def add(builder: NormBuilder) -> NormBuilder:
        NORMS[name] = builder
        return builder

    return add


def build_norm(name: str, channels: int, cfg: ModelConfig) -> nn.Module:
    return NORMS[name](channels, cfg)


@register("none")
def _identity(channels: int, cfg: ModelConfig) -> nn.Module:
    return nn.Identity()


@register("batch")
def _batch(channels: int, cfg: ModelConfig) -> nn.Module:
    return _BatchNorm(channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


@register("noisy_batch")
def _noisy_batch(channels: int, cfg: ModelConfig) -> nn.Module:
    return NoisyBatchNorm(channels, cfg.noise, eps=cfg.bn_eps, momentum=cfg.bn_momentum)


@register("noise")
def _noise(channels: int, cfg: ModelConfig) -> nn.Module:
    return NoiseOnly(channels, cfg.noise)


@register("lp1")
def _lp1(channels: int, cfg: ModelConfig) -> nn.Module:
    return LpNorm(channels, 1, cfg.lp)


@register("lp2")
def _lp2(channels: int, cfg: ModelConfig) -> nn.Module:
    return LpNorm(channels, 2, cfg.lp)


@register("lpinf")
def _lpinf(channels: int, cfg: ModelConfig) -> nn.Module:
    return LpNorm(channels, float("inf"), cfg.lp)


@register("layer")
def _layer(channels: int, cfg: ModelConfig) -> nn.Module:
    return GroupNorm(channels, 1, eps=cfg.bn_eps)  # LayerNorm over (C, H, W), per-channel affine


@register("group")
def _group(channels: int, cfg: ModelConfig) -> nn.Module:
    return GroupNorm(channels, cfg.groups, eps=cfg.bn_eps)


@register("ws_group")
def _ws_group(channels: int, cfg: ModelConfig) -> nn.Module:
    return GroupNorm(channels, cfg.groups, eps=cfg.bn_eps)  # the convs before it: WEIGHT_STANDARDIZED


@register("batch_center")
def _batch_center(channels: int, cfg: ModelConfig) -> nn.Module:
    return PartialBatchNorm(channels, "center", eps=cfg.bn_eps, momentum=cfg.bn_momentum)


@register("batch_scale")
def _batch_scale(channels: int, cfg: ModelConfig) -> nn.Module:
    return PartialBatchNorm(channels, "scale", eps=cfg.bn_eps, momentum=cfg.bn_momentum)


@register("batch_running")
def _batch_running(channels: int, cfg: ModelConfig) -> nn.Module:
    return PartialBatchNorm(channels, "running", eps=cfg.bn_eps, momentum=cfg.bn_momentum)


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm over channels for both (N, C, H, W) conv and (N, C) linear activations."""

    def _check_input_dim(self, x) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {x.dim()}D")


def twice_differentiable():
    """Inside, the l_p norms and BN's parts compute through autograd's formula (exact second derivatives,
    for Hessian-vector products) instead of their fused functions: ~2x such a layer's cost, for the
    measurements only."""
    return setting(FUSED_STATISTICS, "fused", False)
