"""Numbered layers: the paper's "layer #k", shared by every architecture.

A ``Block`` is one numbered layer: a conv or linear layer, its normalisation, its activation. A
model that subclasses ``NumberedModel`` lists its numbered layers in ``blocks`` (the output layer,
a plain Linear, last) and gets ``layer(k)``, ``weight_of(k)`` and ``param_layers()`` for free; the
probes and measurements use only these.
"""

from __future__ import annotations

import torch
from torch import nn

# Where a numbered layer's activations can be watched (probe.points): the part whose output it is.
# pre_norm: the conv or linear output; pre_relu: the norm's output (in a net without a norm, the same
# tensor as pre_norm); post_relu: after the ReLU.
POINTS = {"pre_norm": "layer", "pre_relu": "norm", "post_relu": "act"}


class Block(nn.Module):
    """One numbered layer: conv or linear, then the normalisation, then the activation (ReLU)."""

    def __init__(self, layer: nn.Module, norm: nn.Module, act: nn.Module | None = None):
        super().__init__()
        self.layer, self.norm = layer, norm
        self.act = nn.ReLU() if act is None else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.layer(x)))

    def at(self, point: str) -> nn.Module:
        """The part whose output is the activation at ``point`` (one of ``POINTS``)."""
        return getattr(self, POINTS[point])


class NumberedModel(nn.Module):
    @property
    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def layer(self, k: int) -> nn.Module:
        """Layer #k of the paper, counted from 1 at the input."""
        blocks = self.blocks
        if not 1 <= k <= len(blocks):
            raise IndexError(f"layer #{k} does not exist: this network has layers #1..#{len(blocks)}")
        return blocks[k - 1]

    def weight_of(self, k: int) -> nn.Parameter:
        """The weight tensor W_k of layer #k."""
        block = self.layer(k)
        return block.layer.weight if isinstance(block, Block) else block.weight

    def param_layers(self) -> list[tuple[int, nn.Parameter]]:
        """Every parameter with the number of the layer it belongs to (its norm's gamma/beta included)."""
        return [(k, p) for k, block in enumerate(self.blocks, start=1) for p in block.parameters()]
