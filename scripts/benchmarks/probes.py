#!/usr/bin/env python
"""What do the activation probes (and the paper's measurements) cost? The same model, side by side.

    python scripts/bench.py probes                                   # VGG-16 w=1, CPU or GPU, synthetic data
    python scripts/bench.py probes --width 0.25 --steps 100 --repeats 5
    python scripts/bench.py probes --data-root ~/.cache/ics-study/cifar10   # real CIFAR-10
    python scripts/bench.py probes --with-measurements      # + ICS (2 layers), landscape (4 etas), sharpness every 100 steps
    python scripts/bench.py probes --device cuda --side-stream-ab   # + probes in the step's own chain (GPU)

Runs alternate (off, on, off, on, ...) after one warm-up each, so drifts of a noisy machine hit both
equally; the table gives the median training images/s of each and the ratio on/off, over the whole
run and "steady" (after step min(50, steps/4): without the one-off costs of a run's first steps). Outputs (tables,
events) are written to a temporary folder, exactly as in a real run, so their cost is included.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ics_study.compose import compose
from ics_study.train import train

from .common import alternate, median
from .loop import data_overrides, steady_after

PAPER_STEPS = 15_000  # a paper-scale run (Figure 2): where a run's one-off costs end up


def one_off_seconds(steps: int, rate: float, steady_rate: float, batch: int = 128) -> float:
    """A run's one-off cost: its training time beyond ``steps`` steps at its steady rate."""
    return steps * batch / rate - steps * batch / steady_rate


def slowdown_at(steps: int, on: tuple[float, float], off: tuple[float, float], batch: int = 128) -> float:
    """Fraction of training time the probes add to a run of ``steps`` steps, from each setting's
    (one-off seconds, steady images/s): time = one-off + steps * batch / steady rate."""
    time_on, time_off = (o + steps * batch / r for o, r in (on, off))
    return 1 - time_off / time_on


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg_bn_noise")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=100, help="training steps per timed run (>= probe.every)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--data-root", default=None, help="real CIFAR-10 root; synthetic data if omitted")
    ap.add_argument("--with-measurements", action="store_true", help="also time ICS, the landscape and the sharpness probe at their default cadence")
    ap.add_argument("--side-stream-ab", action="store_true",
                    help="also time probes on with probe.side_stream=false (GPU: their kernels in the step's chain)")
    ap.add_argument("--json", default=None, help="also write the table's numbers here (scripts/targets.py reads it)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. probe.every=50")
    args = ap.parse_args(argv)

    data = data_overrides(args.data_root)
    base = [f"model={args.model}", f"model.width={args.width}", f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={args.steps}", "trainer.progress_bar=false", f"trainer.device={args.device}",
            f"trainer.precision={args.precision}", f"trainer.steady_after={steady_after(args.steps)}",
            *data, *args.overrides]
    variants = {"probes off": ["probe.enabled=false"], "probes on": ["probe.enabled=true"]}
    if args.side_stream_ab:
        variants["probes on, training stream (probe.side_stream=false)"] = ["probe.enabled=true", "probe.side_stream=false"]
    if args.with_measurements:
        variants["probes + ICS (layers #5, #10, every 100)"] = ["ics.enabled=true"]
        variants["probes + landscape (4 etas, every 100)"] = ["landscape.enabled=true"]
        variants["probes + sharpness (every 100, <= 20 H v)"] = ["sharpness.enabled=true"]
    with tempfile.TemporaryDirectory() as tmp:
        def timed(name: str, extra: list[str]):
            def one(r: int) -> dict:  # round 0, a short warm-up run, is dropped
                cfg = compose(base + ["trainer.max_steps=20" if r == 0 else f"trainer.max_steps={args.steps}"] + extra)
                return train(cfg, Path(tmp) / f"{r}_{name.replace(' ', '_')}")
            return one

        summaries = alternate({name: timed(name, extra) for name, extra in variants.items()}, args.repeats, warm_up=1)
    rates = {name: [s["train_images_per_s"] for s in runs] for name, runs in summaries.items()}
    steady = {name: [s["steady_images_per_s"] for s in runs] for name, runs in summaries.items()}
    device = summaries["probes off"][0]["device"]
    off, off_steady = median(rates["probes off"]), median(steady["probes off"])
    off_once = one_off_seconds(args.steps, off, off_steady)
    print(f"\n{args.model} width {args.width}, batch 128, {args.steps} steps x {args.repeats} alternating runs, "
          f"device {device}, {args.precision}; one-off s: training time beyond {args.steps} steps at the steady "
          f"rate (captures, autotuning, set-up); 'at {PAPER_STEPS:,} steps': one-off + steady time, projected")
    print("| setting | median img/s | vs probes off | slowdown | steady img/s | steady slowdown | one-off s | "
          f"slowdown at {PAPER_STEPS:,} steps | runs (steady) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, vals in rates.items():
        med, med_steady = median(vals), median(steady[name])
        once = one_off_seconds(args.steps, med, med_steady)
        projected = slowdown_at(PAPER_STEPS, (once, med_steady), (off_once, off_steady))
        runs = ", ".join(f"{v:.0f} ({s:.0f})" for v, s in zip(vals, steady[name]))
        print(f"| {name} | {med:.1f} | {med / off:.3f} | {100 * (1 - med / off):.1f}% | {med_steady:.1f} | "
              f"{100 * (1 - med_steady / off_steady):.1f}% | {once:.2f} | {100 * projected:.1f}% | {runs} |")
        rows.append({"setting": name, "images_per_s": med, "steady_images_per_s": med_steady,
                     "slowdown": 1 - med / off, "steady_slowdown": 1 - med_steady / off_steady,
                     "one_off_s": once, "slowdown_at_paper_steps": projected})
    if args.json:
        Path(args.json).write_text(json.dumps({"script": "bench.py probes", "device": device, "model": args.model,
                                               "width": args.width, "steps": args.steps, "repeats": args.repeats,
                                               "paper_steps": PAPER_STEPS, "rows": rows}, indent=1))
