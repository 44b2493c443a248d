#!/usr/bin/env python
"""What the noisy BN's injected noise costs per training step, with each source of random numbers.

    python scripts/bench.py noise                         # CPU, VGG-16 width 1/4, batch 128
    python scripts/bench.py noise --device cuda --width 1 --repeats 5

For every noisy layer of a VGG-16 (the shapes its 13 conv blocks see at batch 128, channels-last as
in training) this times forward + backward of plain BN (``nn.BatchNorm2d``) and of the noisy BN with
the counter-based stream (``model.noise.rng=counter``, the CPU default) and with torch's generator
(``generator``, the GPU default), in alternating rounds on the same input. Printed: milliseconds per
step summed over the layers (median of the rounds) and the noise's own cost (noisy minus plain BN).
Then the same for a whole training step (forward, loss, backward, SGD) of the noisy VGG-16 with
either stream, on one fixed random batch. ``bench.py variants`` sets the noisy net beside the others.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from ics_study.config import ModelConfig, NoiseConfig
from ics_study.models import build_model, set_noise_generator
from ics_study.models.noise_stream import noise_stream
from ics_study.models.noisy_bn import NoisyBatchNorm
from ics_study.models.vgg import PLANS

from .common import alternate, median, rounds, table

STREAMS = ("counter", "generator")


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
    """ms per SGD step of the noisy VGG-16 with either stream (same weights and batch)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="vgg_bn_noise", width=width, norm="noisy_batch"))
    model = model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(rng) -> float:
        set_noise_generator(model, noise_stream(rng, 1, device))
        for i in range(steps + 1):  # the first one is a warm-up
            if i == 1:
                sync()
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            opt.step()
        sync()
        return (time.perf_counter() - start) / steps * 1e3

    return alternate({rng: lambda r, rng=rng: timed(rng) for rng in STREAMS}, repeats)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=float, default=0.25, help="VGG channel multiplier (1 = the paper's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    shapes = layer_shapes(args.width, args.batch)
    gen = torch.Generator(device=device).manual_seed(0)
    inputs = [torch.randn(s, device=device, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
              for s in shapes]
    grads = [torch.randn(s, device=device, generator=gen).contiguous(memory_format=torch.channels_last) for s in shapes]

    def build(rng):
        layers = []
        for s in shapes:
            layer = nn.BatchNorm2d(s[1]) if rng is None else NoisyBatchNorm(s[1], NoiseConfig())
            layer.generator = noise_stream(rng, 1, device) if rng else None
            layers.append(layer.to(device, memory_format=torch.channels_last))
        return layers

    kinds = {"BN": None, **{f"noisy BN, {rng}": rng for rng in STREAMS}}
    layers = {name: build(rng) for name, rng in kinds.items()}
    times = alternate({name: lambda r, name=name: step_ms(layers[name], inputs, grads, args.steps) for name in kinds},
                      args.repeats)
    mid = {name: median(t) for name, t in times.items()}
    print(f"noisy BN layers of VGG-16 width {args.width}, batch {args.batch}, channels-last, {device}: "
          f"forward + backward of all {len(shapes)} layers, ms per step (median of {args.repeats})\n")
    print(table(["layers", "ms per step", "noise's own cost (vs BN)", "rounds"],
                [[name, f"{mid[name]:.2f}", "" if name == "BN" else f"{mid[name] - mid['BN']:.2f} ms",
                  rounds(times[name], "{:.2f}")] for name in kinds]))

    step = training_step_ms(args.width, args.batch, device, args.steps, args.repeats)
    print(f"\nwhole training step of the noisy VGG-16 (forward, backward, SGD), ms (median of {args.repeats})\n")
    print(table(["stream", "ms per step", "images/s", "rounds"],
                [[rng, f"{median(step[rng]):.2f}", f"{args.batch / median(step[rng]) * 1e3:.0f}", rounds(step[rng], "{:.2f}")]
                 for rng in STREAMS]))
