#!/usr/bin/env python
"""What keeping freed host memory (``trainer.reuse_host_memory``) buys a CPU run, side by side.

    python scripts/bench_host_memory.py --data-root ~/.cache/ics-study/cifar10
    python scripts/bench_host_memory.py --width 1 --steps 20 --repeats 2 --data-root ...

Each run is a fresh process (the setting is process-wide and cannot be undone), alternating
``trainer.reuse_host_memory=false`` (glibc's defaults) and ``=true`` (ics_study/host_memory.py).
A run trains ``--steps`` steps and evaluates the test set once, at batch ``data.eval_batch_size``
(1000); the table gives the medians of the steady training rate, of the evaluation's time and of
the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench import data_overrides, steady_after  # scripts/bench.py

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, tempfile
from ics_study.compose import compose
from ics_study.train import train
with tempfile.TemporaryDirectory() as run:
    s = train(compose(json.loads(sys.argv[1])), run)
print(json.dumps({"steady": s["steady_images_per_s"], "eval_s": s["eval_time_s"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vgg_bn")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-root", default=None, help="real CIFAR-10 root; synthetic data if omitted")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    data = data_overrides(args.data_root)
    base = [f"model={args.model}", f"model.width={args.width}", f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={args.steps}", f"trainer.steady_after={steady_after(args.steps)}",
            "trainer.device=cpu", "trainer.progress_bar=false", "trainer.checkpoint_every=0", *data, *args.overrides]
    settings = {"glibc's defaults": "false", "freed memory kept (default)": "true"}
    results: dict[str, list[dict]] = {name: [] for name in settings}
    for rep in range(args.repeats):
        for name, value in settings.items():
            overrides = json.dumps(base + [f"trainer.reuse_host_memory={value}"])
            out = subprocess.run([sys.executable, "-c", CHILD, overrides], capture_output=True, text=True, cwd=REPO)
            if out.returncode:
                sys.exit(f"bench_host_memory.py: a run failed:\n{out.stderr[-2000:]}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  round {rep} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    print(f"\n{args.model} width {args.width}, batch 128, {args.steps} steps + one test-set evaluation per run, "
          f"{args.repeats} alternating runs, one process each, CPU")
    print("| host memory | steady img/s | evaluation s | peak RSS MB | runs (evaluation s) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("steady", "eval_s", "rss_mb")}
        evals = ", ".join(f"{r['eval_s']:.2f}" for r in runs)
        print(f"| {name} | {med['steady']:.1f} | {med['eval_s']:.2f} | {med['rss_mb']:.0f} | {evals} |")


if __name__ == "__main__":
    main()
