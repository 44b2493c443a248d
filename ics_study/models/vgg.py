"""VGG for CIFAR-10 (32x32 inputs), as used by the paper.

    depth 16: conv3x3 64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M -> Linear(512*w, 10)

Every conv (and hidden linear) layer is a ``Block`` (blocks.py): layer -> norm -> ReLU, norm from
the registry in ``norms.py`` (identity for the standard net). Blocks are numbered from 1 at the
input, so "layer #k" of the paper is ``model.layer(k)``; the output Linear is the last layer
(#14 in VGG-16) and has no norm or ReLU. Weights are Glorot-uniform, biases zero, BN gamma 1 and
beta 0.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import Block, NumberedModel
from .group_norm import WSConv2d
from .norms import WEIGHT_STANDARDIZED, build_norm

M = "M"  # 2x2 max-pool
PLANS: dict[int, list] = {
    11: [64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    13: [64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M],
    16: [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M],
    19: [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M],
}


class VGG(NumberedModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        features: list[nn.Module] = []
        channels = 3
        for item in PLANS[cfg.depth]:
            if item == M:
                features.append(nn.MaxPool2d(2))
                continue
            out = max(1, round(item * cfg.width))
            conv = (WSConv2d if cfg.norm in WEIGHT_STANDARDIZED else nn.Conv2d)(channels, out, kernel_size=3, padding=1)
            if not cfg.conv_bias:  # built with one and dropped: a seed gives the same weights either way
                conv.bias = None
            features.append(Block(conv, build_norm(cfg.norm, out, cfg)))
            channels = out
        self.features = nn.Sequential(*features)
        head: list[nn.Module] = [nn.Flatten()]
        for hidden in cfg.head_hidden:
            head.append(Block(nn.Linear(channels, hidden), build_norm(cfg.norm, hidden, cfg)))
            channels = hidden
        head.append(nn.Linear(channels, cfg.num_classes))
        self.classifier = nn.Sequential(*head)
        self.reset_parameters()

    @property
    def blocks(self) -> list[nn.Module]:
        """Layers #1..#L in order: the Blocks, then the output Linear."""
        convs = [m for m in self.features if isinstance(m, Block)]
        return convs + [m for m in self.classifier if isinstance(m, (Block, nn.Linear))]

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
