"""Model construction: ``build_model(cfg.model, seed)``."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .dln import DeepLinearNet
from .noisy_bn import noisy_layers
from .norms import NORMS
from .vgg import PLANS, VGG

ARCHS = {"vgg": VGG, "dln": DeepLinearNet}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network described by ``cfg``; weights are drawn from torch's global RNG (seed it first)."""
    return ARCHS[cfg.arch](cfg)


def set_noise_generator(model: nn.Module, generator: torch.Generator) -> int:
    """Give every noisy BN layer the run's noise generator; returns how many layers got it."""
    layers = noisy_layers(model)
    for m in layers:
        m.generator = generator
    return len(layers)


__all__ = ["ARCHS", "NORMS", "PLANS", "build_model", "set_noise_generator"]
