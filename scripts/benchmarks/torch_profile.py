#!/usr/bin/env python
"""Where does a training run spend its time? torch.profiler over the steady steps of one ics-study run.

    python scripts/bench.py profile --device cuda --steps 300                 # probes at defaults
    python scripts/bench.py profile --device cuda --steps 300 probe.enabled=false
    python scripts/bench.py profile --trace /tmp/trace.json ...               # + a Chrome/Perfetto trace

Prints the busiest operators by device time and by host time, and how much of the profiled window's
wall time the device spent in kernels (a GPU loop near 100% is device-bound; far below, the host or
a sync is the limit). One run of ``--skip`` + ``--steps`` steps; the profiler's schedule (driven by
``train``'s ``on_step``) records only the last ``--steps``: step 1, cuDNN's autotuning and the CUDA
graph captures fall in the skipped steps, and the final evaluation after the window. Profiling has
a cost of its own (host-side records of every eager operator), so rates here are lower than in the
benchmarks; the shares are what to read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from ics_study.compose import compose
from ics_study.train import train

from .loop import data_overrides


class Window:
    """Steps the profiler's schedule with ``train``'s ``on_step`` and times the recorded steps (the
    device is synchronised at the window's two ends, nowhere else)."""

    def __init__(self, prof, skip: int, steps: int, cuda: bool):
        self.prof, self.skip, self.last, self.cuda = prof, skip, skip + steps, cuda
        self.start = self.wall = None

    def __call__(self, step: int) -> None:
        if step in (self.skip, self.last) and self.cuda:
            torch.cuda.synchronize()
        if step == self.skip:
            self.start = time.perf_counter()
        elif step == self.last:
            self.wall = time.perf_counter() - self.start
        self.prof.step()


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg_bn_noise")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=300, help="profiled steps")
    ap.add_argument("--skip", type=int, default=100, help="steps trained before profiling starts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--trace", default=None, help="write a Chrome trace here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    if args.skip < 1 or args.steps < 1:
        sys.exit("bench.py profile: --skip and --steps must be at least 1")
    total = args.skip + args.steps
    cfg = compose([f"model={args.model}", f"model.width={args.width}", "trainer.progress_bar=false",
                   f"trainer.device={args.device}", "trainer.checkpoint_every=0", f"trainer.max_steps={total}",
                   f"trainer.eval_every={total}", *data_overrides(args.data_root), *args.overrides])
    cuda = torch.cuda.is_available() and args.device != "cpu"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # prof.step() after step k ends the profiler's step k: wait through step skip - 1, warm up on step
    # skip (the profiler starts its tracer), record steps skip + 1 .. skip + steps
    plan = schedule(wait=args.skip - 1, warmup=1, active=args.steps, repeat=1)
    with tempfile.TemporaryDirectory() as run, profile(activities=activities, schedule=plan) as prof:
        window = Window(prof, args.skip, args.steps, cuda)
        summary = train(cfg, run, on_step=window)
    averages = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in averages if e.device_type.name == "CUDA")
    print(f"{args.model} width {args.width}, steps {args.skip + 1}-{total} profiled: "
          f"{args.steps * cfg.data.batch_size / window.wall:.0f} img/s in the window (profiler overhead included), "
          f"window wall {window.wall:.2f} s, CUDA graph {summary.get('cuda_graph')}")
    if device_us:
        print(f"device busy in kernels: {device_us / 1e6:.2f} s = {device_us / 1e6 / window.wall:.0%} of the window's wall time")
        print(averages.table(sort_by="self_cuda_time_total", row_limit=25))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    if args.trace:
        prof.export_chrome_trace(args.trace)
