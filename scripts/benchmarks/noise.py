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

``--parts`` (CPU) times the counter stream's compiled kernel on one layer's worth of elements and
the same kernel with parts taken out, each compiled by Inductor as the real one is: what the hash,
Box-Muller's log, sqrt and cos, and the element index each cost, and the floor of one elementwise
pass (addcmul). It also times a cheaper 32-bit hash (two rounds of lowbias32, C. Wellons) that the
stream does not use, to show what replacing splitmix64 would save.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from ics_study.config import ModelConfig, NoiseConfig
from ics_study.models import build_model, set_noise_generator
from ics_study.models import noise_stream as ns
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


def _hash_only(a, base, c):
    u, v, w = ns._uniforms(ns._positions(a.numel(), a.shape[1], a.device), base, c)
    return (a.float() * u + v + w).to(a.dtype)


def _box_muller_only(a):  # the same transcendental arithmetic on uniforms from the index alone
    k = ns._positions(a.numel(), a.shape[1], a.device)
    v = ((k & 1023).float() + 0.5) * (1 / 1024)
    z = torch.sqrt(-2.0 * torch.log(v)) * torch.cos((2.0 * torch.pi) * v)
    return (a.float() * z).to(a.dtype)


def _index_only(a):
    return (a.float() * (ns._positions(a.numel(), a.shape[1], a.device) & 1023).float()).to(a.dtype)


def _lowbias32(x):  # int32 arithmetic wraps; >> is arithmetic, so mask to a logical shift
    for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B - (1 << 32)), (16, None)):
        x = x ^ ((x >> shift) & ((1 << (32 - shift)) - 1))
        x = x * mult if mult is not None else x
    return x


def _hash32_only(a, key):  # 64 bits as two 32-bit hashes: what a cheaper counter stream would cost
    k = torch.arange(a.numel(), dtype=torch.int32, device=a.device).view(-1, a.shape[1]) * 2 + key
    h1, h2 = _lowbias32(k), _lowbias32(k + 1)
    return (a.float() * (h1 & 0x3FFFFF).float() + (h2 & 0x7FFFFF).float()).to(a.dtype)


def kernel_parts(elements: int, channels: int, dtype: torch.dtype, repeats: int) -> None:
    """ms per call of the compiled noise kernel and of its parts, alternating, on one (rows, channels) input."""
    a = torch.randn(elements // channels, channels).to(dtype)
    base, c = torch.tensor(12345), ns._CONSTS
    mu, sigma = torch.zeros(channels), torch.ones(channels)
    kinds = {"the kernel: s a + m, s (as trained)": (ns._apply, (a, base, c, mu, sigma, 0.1, 0.1)),
             "hash (splitmix64) and uniforms only": (_hash_only, (a, base, c)),
             "Box-Muller only (log, sqrt, cos)": (_box_muller_only, (a,)),
             "element index only": (_index_only, (a,)),
             "32-bit hash x2 only (not used)": (_hash32_only, (a, torch.tensor(12345, dtype=torch.int32))),
             "one elementwise pass (addcmul, eager)": (lambda x: torch.addcmul(x, x, x), (a,))}
    compiled = {name: (torch.compile(f, dynamic=True) if "eager" not in name else f, args)
                for name, (f, args) in kinds.items()}

    def ms(name: str) -> float:
        f, args = compiled[name]
        start = time.perf_counter()
        for _ in range(10):
            f(*args)
        return (time.perf_counter() - start) / 10 * 1e3

    times = alternate({name: lambda r, name=name: ms(name) for name in kinds}, repeats, warm_up=1)
    print(f"\nthe counter stream's kernel and its parts, {elements:,} elements x {channels} channels, {dtype}, "
          f"{torch.get_num_threads()} threads, ms per call (median of {repeats}; each compiled by Inductor)\n")
    print(table(["kernel", "ms", "ns per element", "rounds"],
                [[name, f"{median(t):.2f}", f"{median(t) * 1e6 / elements:.2f}", rounds(t, "{:.2f}")]
                 for name, t in times.items()]))


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=float, default=0.25, help="VGG channel multiplier (1 = the paper's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    ap.add_argument("--parts", action="store_true",
                    help="also time the CPU kernel's parts (hash, Box-Muller, index) on one layer's elements")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.parts and device.type == "cpu":
        for dtype in (torch.bfloat16, torch.float32):  # the first conv block's output at width 1/4
            kernel_parts(args.batch * 32 * 32 * max(1, round(64 * args.width)), max(1, round(64 * args.width)),
                         dtype, args.repeats)
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
