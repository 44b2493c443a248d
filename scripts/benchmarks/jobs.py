#!/usr/bin/env python
"""How many runs at once: one run on every core against N runs side by side, each on cores/N threads.

    python scripts/bench.py jobs                                 # 2 jobs, BN and noisy BN, width 1/4, bf16
    python scripts/bench.py jobs --jobs 2,4 --norms batch --steps 20

What ``scripts/reproduce.sh``'s ``JOBS`` chooses. Each candidate is a set of worker processes that
build VGG-16 (channels-last, batch 128, one fixed batch), warm up, wait at a barrier and then time
the same number of training steps (forward, loss, backward, SGD), all at once; candidates alternate
in rounds. Printed: the machine's training steps per second (summed over the workers) and its ratio
to one job on every core. Small convolutions leave a second thread partly idle (the DLN's sweeps
already run two at a time for that reason); this measures by how much for the VGG nets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from .common import alternate, median, rounds, table


def worker(args) -> None:
    """One process of a candidate: build, warm up, say ready, wait for the go line, time, print ms/step."""
    from .variants import build, step_ms

    torch.set_num_threads(args.threads)
    model = build(args.norm, "counter" if args.norm == "noisy_batch" else None, args.width)
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    step_ms(model, x, y, args.precision, 2)  # warm-up beyond step_ms's own first step
    print("ready", flush=True)
    sys.stdin.readline()
    print(f"{step_ms(model, x, y, args.precision, args.steps):.3f}", flush=True)


def side_by_side(jobs: int, norm: str, args) -> float:
    """Training steps per second of ``jobs`` workers timed together, each on cores/jobs threads."""
    threads = max(1, CORES // jobs)
    cmd = [sys.executable, sys.argv[0], "jobs", "--worker", "--norm", norm, "--threads", str(threads),
           "--steps", str(args.steps), "--width", str(args.width), "--batch", str(args.batch), "--precision", args.precision]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    for p in procs:  # the barrier: every worker built and warm before any is timed
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench.py jobs: a worker failed before its timed steps (exit {p.wait()})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    ms = [float(p.communicate()[0].split()[-1]) for p in procs]
    return sum(1e3 / m for m in ms)


CORES = len(os.sched_getaffinity(0))  # the cores this process may use: what reproduce.sh's nproc counts


def main(argv: list[str], prog: str = "bench.py jobs") -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="2", help="comma-separated numbers of runs at once, each against 1")
    ap.add_argument("--norms", default="batch,noisy_batch", help="comma-separated values of model.norm")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per worker and round")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--norm", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    counts = [1] + [int(j) for j in args.jobs.split(",") if int(j) != 1]
    for norm in args.norms.split(","):
        rates = alternate({n: lambda r, n=n, norm=norm: side_by_side(n, norm, args) for n in counts}, args.repeats)
        mid = {n: median(v) for n, v in rates.items()}
        print(f"\nmodel.norm={norm}: VGG-16 width {args.width}, batch {args.batch}, {args.precision}, {CORES} cores "
              f"(median of {args.repeats} alternating rounds of {args.steps} steps per worker)\n")
        print(table(["runs at once", "threads each", "steps/s, whole machine", "vs 1 run", "rounds"],
                    [[n, max(1, CORES // n), f"{s:.2f}", f"{s / mid[1]:.2f}x", rounds(rates[n], "{:.2f}")]
                     for n, s in mid.items()]))
