"""``probe.batch=fixed``: the activation probe's held batch, forwarded after each update."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..models.noise_stream import stream_like
from ..models.noisy_bn import noise_from, noisy_layers
from .replay import Replay


class FixedBatch:
    """``probe.batch=fixed``: one training batch held for the run and forwarded after every update, in
    training mode (BN uses batch statistics), with every buffer restored afterwards (BN and l_p
    running statistics, the global RNGs) and the noisy BN's noise from a stream of its own."""

    SIZE = 128  # images; the training batch of the paper's protocol

    def __init__(self, data, seed: int):
        g = torch.Generator().manual_seed(seed * 1000 + 5)  # the probe's own draw, apart from training's
        idx = torch.randperm(len(data.y_train), generator=g)[: self.SIZE].to(data.x_train.device)
        self.images = data.normalize(data.x_train[idx])
        self.noise = None  # its noise stream: made at the first forward, of the training stream's kind
        self.saved_noise: torch.Tensor | None = None  # a checkpoint's state for that stream, until then

    @torch.no_grad()
    def forward(self, model: nn.Module, recording) -> None:
        """The held batch through ``model`` inside the context ``recording`` (the probe's hooks on)."""
        noisy = noisy_layers(model)
        if noisy and self.noise is None:
            self.noise = stream_like(noisy[0].generator, noisy[0].generator.initial_seed() + 7)
            if self.saved_noise is not None:
                self.noise.set_state(self.saved_noise)
        with Replay(model, None).isolated(), noise_from(model, self.noise) if noisy else contextlib.nullcontext(), \
                recording():
            model(self.images.to(next(model.parameters()).device))

    def noise_state(self) -> torch.Tensor | None:
        return self.noise.get_state() if self.noise is not None else self.saved_noise

    def load_noise_state(self, state: torch.Tensor) -> None:
        self.saved_noise = state
        if self.noise is not None:
            self.noise.set_state(state)
