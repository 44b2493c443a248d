#!/usr/bin/env python
"""Where does a training run spend its time? torch.profiler over a short ics-study run.

    python scripts/profile_step.py --device cuda --steps 300                 # probes at defaults
    python scripts/profile_step.py --device cuda --steps 300 probe.enabled=false
    python scripts/profile_step.py --trace /tmp/trace.json ...               # + a Chrome/Perfetto trace

Prints the busiest operators by device time and by host time, and how much of the run's wall time
the device spent in kernels (a GPU loop at 100% is device-bound; far below, the host or a sync is
the limit). The first ``--skip`` steps (capture, warm-up) are excluded by profiling a second run
segment only: the run is trained to ``--skip`` steps first, then resumed under the profiler.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import data_overrides  # noqa: E402  (scripts/bench.py)

from ics_study.compose import compose  # noqa: E402
from ics_study.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg_bn_noise")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=300, help="profiled steps")
    ap.add_argument("--skip", type=int, default=100, help="steps trained before profiling starts")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--trace", default=None, help="write a Chrome trace here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    data = data_overrides(args.data_root)
    base = [f"model={args.model}", f"model.width={args.width}", "trainer.progress_bar=false",
            f"trainer.device={args.device}", "trainer.checkpoint_every=0", *data, *args.overrides]
    total = args.skip + args.steps
    with tempfile.TemporaryDirectory() as run:
        train(compose(base + [f"trainer.max_steps={args.skip}", f"trainer.eval_every={total}"]), run)
        cfg = compose(base + [f"trainer.max_steps={total}", f"trainer.eval_every={total}"])
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            summary = train(cfg, run)
        wall = time.perf_counter() - start
    averages = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in averages if e.device_type.name == "CUDA")
    print(f"{args.model} width {args.width}, {args.steps} profiled steps after {args.skip}: "
          f"{summary['train_images_per_s']:.0f} img/s (profiler overhead included), wall {wall:.2f} s, "
          f"CUDA graph {summary.get('cuda_graph')}")
    if device_us:
        print(f"device busy in kernels: {device_us / 1e6:.2f} s = {device_us / 1e6 / wall:.0%} of wall time")
        print(averages.table(sort_by="self_cuda_time_total", row_limit=25))
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
