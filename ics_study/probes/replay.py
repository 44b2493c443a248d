"""Run extra forward passes at a training step without disturbing training.

A measurement (ICS, landscape) re-evaluates the loss of the step's batch at other weights. Inside
``Replay.isolated()`` every such pass sees exactly what the training forward of the step saw:
``rewind()`` puts the noise generator and every buffer back to their state at the start of the step
(a held noise pair, and the running statistics of a norm that normalises with them in training).
BN runs in training mode (batch statistics), and on exit every buffer and random generator (noise,
torch CPU, CUDA) is back where training left it.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def put_back(tensor: torch.Tensor, saved: torch.Tensor) -> None:
    """``tensor`` in place as ``saved`` was, size included (a held noise pair is sized at its first draw)."""
    if tensor.shape != saved.shape:
        tensor.resize_(saved.shape)
    tensor.copy_(saved)


class Replay:
    def __init__(self, model: nn.Module, noise_gen: torch.Generator | None):
        self.model, self.noise_gen = model, noise_gen
        self.step_start: torch.Tensor | None = None
        self.step_start_buffers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def mark_step_start(self) -> None:
        """Call before the training forward of a step that will be measured. Copies every buffer: a few
        kB for VGG-16 (running statistics), once per measured step."""
        if self.noise_gen is not None:
            self.step_start = self.noise_gen.get_state()
        self.step_start_buffers = [(b, b.detach().clone()) for b in self.model.buffers()]

    def rewind(self) -> None:
        if self.noise_gen is not None and self.step_start is not None:
            self.noise_gen.set_state(self.step_start)
        with torch.no_grad():
            for b, saved in self.step_start_buffers:
                put_back(b, saved)

    @contextlib.contextmanager
    def isolated(self):
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        noise = self.noise_gen.get_state() if self.noise_gen is not None else None
        cpu = torch.get_rng_state()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            yield self
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    put_back(b, saved)
            if noise is not None:
                self.noise_gen.set_state(noise)
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)


class PendingScalars:
    """Scalars computed on the device at some steps, read back to the host once per flush."""

    def __init__(self):
        self.items: list[tuple[int, str, torch.Tensor]] = []

    def add(self, step: int, values: dict[str, torch.Tensor]) -> None:
        self.items += [(step, name, v.detach().reshape(())) for name, v in values.items()]

    def collect(self, recorder):
        """The pending values as one device tensor and the function that writes them from the host."""
        if not self.items:
            return None
        items, self.items = self.items, []
        tensor = torch.stack([v.double() for _, _, v in items])

        def write(host) -> None:
            series: dict[str, tuple[list[int], list[float]]] = {}
            for (step, name, _), value in zip(items, host.tolist()):
                steps, vals = series.setdefault(name, ([], []))
                steps.append(step)
                vals.append(value)
            for name, (steps, vals) in series.items():
                recorder.scalars(steps, {name: vals})

        return tensor, write
