"""Test-set evaluation, and the three readings of a noisy network's test accuracy.

``evaluate`` is the one every run gets: evaluation mode (BN with its running statistics, no noise
unless ``model.noise.in_eval``), the whole test set. For a noisy-BN network that number mixes two things: the noise is off, but BN's
running statistics were gathered while every upstream layer was noisy. So noisy networks are also
evaluated (``eval.noisy_modes``), side by side, as

- ``recalibrated``: noise off, BN running statistics re-estimated on ``eval.recalibration_batches``
  clean training batches (a cumulative average, as ``momentum=None`` gives; weights untouched), then
  evaluation mode: what the trained weights do as a plain BN network;
- ``noise_on``: as in training: BN on each test batch's own statistics (batches of the training
  size) and the noise on, drawn from an evaluation generator of its own, so the training noise
  stream is untouched.

Both run inside ``Replay.isolated``: every buffer (running statistics) and random generator is put
back afterwards, so training goes on exactly as without them (tested). Cost, per evaluation at
which they run: about ``recalibration_batches`` x batch forward passes plus two test-set passes.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..data.tasks import Task
from ..models.noise_stream import stream_like
from ..models.noisy_bn import noise_from, noise_off, noisy_layers
from ..probes.replay import Replay
from .precision import autocast

NOISY_MODES = ("recalibrated", "noise_on")  # metric prefixes test_<mode>/loss, test_<mode>/acc


@torch.no_grad()
def evaluate(model: nn.Module, data, task: Task, batch_size: int, device, precision: str,
             seed: int = 0) -> tuple[float, float]:
    """Mean loss and accuracy (NaN without one) over the whole test set, in evaluation mode. A noise
    that also acts in evaluation (``model.noise.in_eval``) is drawn from a stream of its own, seeded by
    ``seed`` and restarted at every call: the training stream never moves, and evaluations differ
    only by their weights."""
    model.eval()
    layers = [m for m in noisy_layers(model) if m.in_eval]
    stream = stream_like(layers[0].generator, seed * 1000 + 11) if layers else None
    try:
        with noise_from(model, stream) if stream is not None else contextlib.nullcontext():
            return _test_set(model, data, task, batch_size, device, precision)
    finally:
        model.train()


def _test_set(model, data, task: Task, batch_size: int, device, precision: str) -> tuple[float, float]:
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    for x, y in data.test_batches(batch_size):
        with autocast(device, precision):
            out = model(x)
        loss_sum += task.loss_sum(out, y)
        if task.accuracy is not None:
            correct += task.accuracy(out, y) * len(y)
    n = len(data.y_test)
    return loss_sum.item() / n, (correct.item() / n if task.accuracy is not None else math.nan)


class NoisyEvaluation:
    """The extra readings of a noisy network (``NOISY_MODES``); ``None`` from ``build`` otherwise."""

    def __init__(self, model: nn.Module, data, task: Task, cfg, seed: int, device, precision: str, batch_size: int):
        self.model, self.data, self.task, self.cfg = model, data, task, cfg
        self.device, self.precision, self.batch_size = device, precision, batch_size
        self.noise = stream_like(noisy_layers(model)[0].generator, seed * 1000 + 9)  # its own noise stream
        self.batches = torch.Generator().manual_seed(seed * 1000 + 10)  # which clean batches recalibrate

    @classmethod
    def build(cls, model, data, task, cfg, seed, device, precision, batch_size):
        if not cfg.noisy_modes or not noisy_layers(model):
            return None
        return cls(model, data, task, cfg, seed, device, precision, batch_size)

    @torch.no_grad()
    def measure(self, eval_batch_size: int) -> dict[str, tuple[float, float]]:
        """{mode: (test loss, test accuracy)} for every mode of ``NOISY_MODES``."""
        out = {}
        with Replay(self.model, None).isolated(), noise_from(self.model, self.noise):
            self.model.train()
            out["noise_on"] = self._test_set_in_training_mode()
            self._recalibrate()
            self.model.eval()
            with noise_off(self.model):  # a plain BN network, also where model.noise.in_eval adds the noise
                out["recalibrated"] = _test_set(self.model, self.data, self.task, eval_batch_size, self.device,
                                                self.precision)
        self.model.train()
        return out

    def _test_set_in_training_mode(self) -> tuple[float, float]:
        # training-sized batches: BN's batch statistics then come from as many samples as in training
        return _test_set(self.model, self.data, self.task, self.batch_size, self.device, self.precision)

    def _recalibrate(self) -> None:
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the recalibration batches
            self.model.train()
            n = len(self.data.y_train)
            with noise_off(self.model):
                for _ in range(self.cfg.recalibration_batches):
                    idx = torch.randint(n, (self.batch_size,), generator=self.batches).to(self.data.x_train.device)
                    with autocast(self.device, self.precision):
                        self.model(self.data.normalize(self.data.x_train[idx]))
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum

    def state_dict(self) -> dict:
        return {"noise": self.noise.get_state(), "batches": self.batches.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.noise.set_state(state["noise"])
        self.batches.set_state(state["batches"])
