#!/usr/bin/env python
"""What the noisy BN's injected noise costs per training step, and what its earlier form cost.

    python scripts/bench.py noise                         # CPU, VGG-16 width 1/4, batch 128
    python scripts/bench.py noise --device cuda --width 1 --repeats 5

For every noisy layer of a VGG-16 (the shapes its 13 conv blocks see at batch 128, channels-last as
in training) this times forward + backward of three things on the same input, in alternating rounds:
plain BN (``nn.BatchNorm2d``), the noisy BN as it is now (``ics_study.models.noisy_bn``) and the noisy
BN as it was before 2026-11-27 (kept below: per-element noise drawn in NCHW order next to an NHWC
activation, eight elementwise passes, three kernels per per-channel draw where one does now).
Printed: milliseconds per step summed over the layers (median of the rounds), and the noise's own
cost (noisy minus plain BN) in both forms. Then the same for a whole training step (forward, loss,
backward, SGD) of the noisy VGG-16 with either form of the noise, on one fixed random batch,
alternating: what the rewrite saves in every step of a noisy-BN run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from ics_study.config import ModelConfig, NoiseConfig  # noqa: E402
from ics_study.models import build_model, set_noise_generator  # noqa: E402
from ics_study.models.noisy_bn import NoisyBatchNorm, noisy_layers  # noqa: E402
from ics_study.models.vgg import PLANS  # noqa: E402


class NoisyBatchNormBefore(NoisyBatchNorm):
    """The noise as first written: NCHW-ordered draws, one pass (or kernel) per arithmetic operation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = nn.BatchNorm2d.forward(self, x)
        return a * self._scale_like(a) + self._shift_like(a)

    def _uniform(self, shape, low, high, like):
        return low + (high - low) * torch.rand(shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def _scale_like(self, a):
        sigma = self._uniform(self._channel_shape(a), 1.0, self.n_sigma, a)
        eps = torch.randn(a.shape, generator=self.generator, device=a.device, dtype=a.dtype)
        return sigma + self.r_sigma * eps

    def _shift_like(self, a):
        mu = self._uniform(self._channel_shape(a), -self.n_mu, self.n_mu, a)
        return self._uniform(a.shape, -self.r_mu, self.r_mu, a) + mu


def layer_shapes(width: float, batch: int) -> list[tuple[int, int, int, int]]:
    shapes, size = [], 32
    for item in PLANS[16]:
        if item == "M":
            size //= 2
        else:
            shapes.append((batch, max(1, round(item * width)), size, size))
    return shapes


def step_ms(layers: list[nn.Module], inputs: list[torch.Tensor], grads: list[torch.Tensor], steps: int) -> float:
    """Milliseconds per step of forward + backward through every layer (each on its own input)."""
    def one_step():
        for layer, x, g in zip(layers, inputs, grads):
            layer(x).backward(g)

    one_step()  # warm-up (allocator, cuDNN)
    sync = torch.cuda.synchronize if inputs[0].is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    sync()
    return (time.perf_counter() - start) / steps * 1e3


def training_step_ms(width: float, batch: int, device: torch.device, steps: int, repeats: int) -> dict[str, list[float]]:
    """ms per SGD step of the noisy VGG-16 with the noise now and before (same weights and batch)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="vgg_bn_noise", width=width, norm="noisy_batch"))
    model = model.to(device, memory_format=torch.channels_last).train()
    set_noise_generator(model, torch.Generator(device=device).manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)
    noisy = noisy_layers(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(form) -> float:
        for m in noisy:
            m.__class__ = form
        for i in range(steps + 1):  # the first one is a warm-up
            if i == 1:
                sync()
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            opt.step()
        sync()
        return (time.perf_counter() - start) / steps * 1e3

    times = {"now": [], "before": []}
    for _ in range(repeats):
        for name, form in (("now", NoisyBatchNorm), ("before", NoisyBatchNormBefore)):
            times[name].append(timed(form))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=float, default=0.25, help="VGG channel multiplier (1 = the paper's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    args = ap.parse_args()
    device = torch.device(args.device)
    shapes = layer_shapes(args.width, args.batch)
    gen = torch.Generator(device=device).manual_seed(0)
    inputs = [torch.randn(s, device=device, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
              for s in shapes]
    grads = [torch.randn(s, device=device, generator=gen).contiguous(memory_format=torch.channels_last) for s in shapes]

    def build(kind):
        layers = []
        for s in shapes:
            layer = nn.BatchNorm2d(s[1]) if kind is nn.BatchNorm2d else kind(s[1], NoiseConfig())
            layer.generator = torch.Generator(device=device).manual_seed(1)
            layers.append(layer.to(device, memory_format=torch.channels_last))
        return layers

    kinds = {"BN": nn.BatchNorm2d, "noisy BN, now": NoisyBatchNorm, "noisy BN, before": NoisyBatchNormBefore}
    layers = {name: build(kind) for name, kind in kinds.items()}
    times = {name: [] for name in kinds}
    for _ in range(args.repeats):
        for name in kinds:
            times[name].append(step_ms(layers[name], inputs, grads, args.steps))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"noisy BN layers of VGG-16 width {args.width}, batch {args.batch}, channels-last, {device}: "
          f"forward + backward of all {len(shapes)} layers, ms per step (median of {args.repeats})\n")
    print("| layers | ms per step | noise's own cost (vs BN) | rounds |")
    print("|---|---|---|---|")
    for name in kinds:
        extra = "" if name == "BN" else f"{median[name] - median['BN']:.2f} ms"
        print(f"| {name} | {median[name]:.2f} | {extra} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    before, now = (median[n] - median["BN"] for n in ("noisy BN, before", "noisy BN, now"))
    if now > 0:
        print(f"\nthe noise now costs {now / before:.2f}x what it cost before ({before - now:.2f} ms less per step)")

    step = training_step_ms(args.width, args.batch, device, args.steps, args.repeats)
    now, before = statistics.median(step["now"]), statistics.median(step["before"])
    print(f"\nwhole training step of the noisy VGG-16 (forward, backward, SGD), ms (median of {args.repeats})\n")
    print("| noise | ms per step | images/s | rounds |")
    print("|---|---|---|---|")
    for name, ms in (("now", now), ("before", before)):
        print(f"| {name} | {ms:.2f} | {args.batch / ms * 1e3:.0f} | {', '.join(f'{t:.2f}' for t in step[name])} |")
    print(f"\nstep time now / before: {now / before:.3f} (images/s {before / now:.2f}x)")


if __name__ == "__main__":
    main()
