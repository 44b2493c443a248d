"""The deep linear network of the paper's appendix (Figures 3b, 5b, 9, 10, 13).

``model.depth`` square ``features x features`` linear layers (25 x 10x10 in the paper), no
non-linearity, Glorot-uniform weights, no biases [I]. With ``model.norm`` set, a normalisation
follows each layer but the last. Layers are numbered #1..#depth like the VGG's, so the same
probes and measurements apply.
"""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .blocks import Block, NumberedModel
from .norms import build_norm


class DeepLinearNet(NumberedModel):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f = cfg.features
        layers: list[nn.Module] = []
        for _ in range(cfg.depth - 1):
            layers.append(Block(nn.Linear(f, f, bias=cfg.bias), build_norm(cfg.norm, f, cfg), act=nn.Identity()))
        layers.append(nn.Linear(f, f, bias=cfg.bias))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def blocks(self) -> list[nn.Module]:
        return list(self.net)

    def forward(self, x):
        return self.net(x)
