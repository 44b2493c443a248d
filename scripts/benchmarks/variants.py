#!/usr/bin/env python
"""Every network side by side: its training step and a whole short run, against BN's.

    python scripts/bench.py variants                                   # bf16 and fp32, width 1/4, synthetic data
    python scripts/bench.py variants --data-root DATA --run-steps 200  # and a short run of each on real data
    python scripts/bench.py variants --quick                           # seconds; what the test suite runs

(a) Training step: forward, loss, backward and SGD of VGG-16 (channels-last, batch 128) for each
    network, on one fixed batch, in alternating rounds (standard, BN, noisy BN with the counter-based
    stream, noisy BN with torch's generator, noisy BN with its noise drawn once and reused -- the
    bound for any way of drawing it -- l1, l2, l_inf, and the normalisers beyond the paper). Median ms
    per step and the ratio to BN.
(b) Whole short run (``--run-steps N``, 0 = skip): ``train()`` of each network as
    ``scripts/reproduce.sh`` runs it (scale=cpu_small: probes, ICS and the landscape every 50 steps,
    an evaluation every N/2 steps, the noisy net's extra test readings at the end), alternating,
    under cProfile, and where the time went: training steps, the noise, the norm layers' forward
    (and the l_p backward), ICS, landscape, test-set evaluation, the noisy readings, checkpoints,
    read-back and tables. Then the same shares projected to a 2,000-step ``cpu_small`` run (per-step
    parts x 2000/N; evaluations x 9 / the short run's; the noisy readings once).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ics_study.config import ModelConfig
from ics_study.models import build_model, set_noise_generator
from ics_study.models.noise_stream import CounterStream
from ics_study.models.noisy_bn import NoisyBatchNorm, noisy_layers
from ics_study.train.host_memory import keep_freed_memory
from ics_study.train.precision import autocast

from .common import alternate, median, rounds, table

# (label, model.norm, how its noise is drawn)
STEP_VARIANTS = [("standard", "none", None), ("BN", "batch", None), ("noisy BN", "noisy_batch", "counter"),
                 ("noisy BN, torch generator", "noisy_batch", "generator"),
                 ("noisy BN, noise drawn once (bound)", "noisy_batch", "reused"),
                 ("l1", "lp1", None), ("l2", "lp2", None), ("l_inf", "lpinf", None),
                 # beyond the paper (experiment=normalisers)
                 ("LayerNorm", "layer", None), ("GroupNorm", "group", None), ("WS + GroupNorm", "ws_group", None),
                 ("BN, centring only", "batch_center", None), ("BN, scaling only", "batch_scale", None),
                 ("BN, running statistics", "batch_running", None)]
RUN_MODELS = ["vgg", "vgg_bn", "vgg_bn_noise", "vgg_lp1", "vgg_lp2", "vgg_lpinf"]


class _ReusedNoise(NoisyBatchNorm):
    """The noise of the first step, stored and reused: what a step costs when drawing the noise costs
    nothing but applying it is a pass of its own."""

    def add_noise(self, a):
        key = (tuple(a.shape), a.dtype)
        if getattr(self, "_kept", (None,))[0] != key:
            self._kept = (key, self.draw_noise(a))
        s, m = self._kept[1]
        return torch.addcmul(m, a, s)


def build(norm: str, noise: str | None, width: float) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=norm, width=width, norm=norm)).to(memory_format=torch.channels_last).train()
    if noise is not None:
        set_noise_generator(model, torch.Generator().manual_seed(1) if noise == "generator"
                            else CounterStream().manual_seed(1))
        if noise == "reused":
            for m in noisy_layers(model):
                m.__class__ = _ReusedNoise
    return model


def step_ms(model: nn.Module, x, y, precision: str, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def one():
        opt.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), precision):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    one()  # warm-up: allocator, the noise kernel's compilation
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - start) / steps * 1e3


def step_table(args) -> None:
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    models = {label: build(norm, noise, args.width) for label, norm, noise in STEP_VARIANTS}
    for precision in args.precision.split(","):
        times = alternate({label: lambda r, m=model, p=precision: step_ms(m, x, y, p, args.steps) for label, model in models.items()},
                          args.repeats)
        mid = {k: median(v) for k, v in times.items()}
        print(f"\ntraining step, VGG-16 width {args.width}, batch {args.batch}, {precision}, channels-last "
              f"(median of {args.repeats} alternating rounds of {args.steps} steps)\n")
        print(table(["network", "ms per step", "vs BN", "rounds"],
                    [[label, f"{ms:.1f}", f"{ms / mid['BN']:.2f}x", rounds(times[label])] for label, ms in mid.items()]))


# --- whole runs ---------------------------------------------------------------------------------
# (part, file, function): cProfile's cumulative time of each. Parts overlap: the noise and the
# norm layers run inside the training steps, ICS, the landscape and the noisy readings.
PARTS = [("training steps", "train/step.py", "__call__"), ("ICS", "probes/ics.py", "step"),
         ("landscape", "probes/landscape.py", "measure"), ("the noise", "models/noisy_bn.py", "add_noise"),
         ("norm layers: forward", "models/noisy_bn.py", "forward"), ("norm layers: forward", "models/lp_norm.py", "forward"),
         ("norm layers: forward", "modules/batchnorm.py", "forward"), ("norm layers: l_p backward", "models/lp_norm.py", "backward"),
         ("test-set evaluation", "train/evaluation.py", "evaluate"), ("noisy readings", "train/evaluation.py", "measure"),
         ("checkpoints", "train/run.py", "save_checkpoint"), ("read-back and tables", "train/run.py", "flush")]
PER_STEP = {"training steps", "ICS", "landscape", "the noise", "norm layers: forward", "norm layers: l_p backward",
            "read-back and tables"}


def profiled_run(model: str, args, out: Path) -> tuple[float, dict[str, float], dict]:
    from ics_study.compose import compose
    from ics_study.train import train

    data = ["data=cifar10", f"data.root={args.data_root}", "data.download=false"] if args.data_root else ["data=synthetic"]
    half = max(1, args.run_steps // 2)
    cfg = compose([f"model={model}", "experiment=paper", "scale=cpu_small", *data, f"trainer.precision={args.run_precision}",
                   f"trainer.max_steps={args.run_steps}", f"trainer.eval_every={half}", "trainer.progress_bar=false",
                   "logger.tensorboard=false", "hydra.sweeper.params={}"])
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    summary = train(cfg, out)
    profiler.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    parts: dict[str, float] = {}
    for name, file, function in PARTS:  # a part named twice takes the larger: BN's forward runs inside the noisy one's
        cum = sum(v[3] for (f, _, fn), v in stats.items() if f.endswith(file) and fn == function)
        parts[name] = max(parts.get(name, 0.0), cum)
    return wall, parts, summary


def run_table(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = alternate({m: lambda r, m=m: profiled_run(m, args, Path(tmp) / f"{m}-{r}") for m in RUN_MODELS}, args.run_repeats)
    walls = {m: [wall for wall, _, _ in rs] for m, rs in runs.items()}
    parts = {m: rs[-1][1] for m, rs in runs.items()}  # the last round's split
    mid = {m: median(w) for m, w in walls.items()}
    evals = 2  # eval_every = run_steps / 2: at the middle and at the end
    print(f"\nwhole run: {args.run_steps} steps of scale=cpu_small as scripts/reproduce.sh runs it "
          f"({args.run_precision}; probes, ICS and the landscape every 50 steps; {'real' if args.data_root else 'synthetic'} "
          f"data), seconds (median of {args.run_repeats} alternating rounds; split from the last, cProfile)\n")
    print("| part | " + " | ".join(RUN_MODELS) + " |")
    print("|---|" + "---|" * len(RUN_MODELS))
    print("| **wall** | " + " | ".join(f"**{mid[m]:.1f}** ({mid[m] / mid['vgg_bn']:.2f}x BN)" for m in RUN_MODELS) + " |")
    for name in dict.fromkeys(n for n, _, _ in PARTS):
        print(f"| {name} | " + " | ".join(f"{parts[m][name]:.1f}" if parts[m][name] else "" for m in RUN_MODELS) + " |")
    scale = 2000 / args.run_steps
    print(f"\nprojected to a 2,000-step cpu_small run (per-step parts x {scale:g}, evaluations x {9 / evals:g}, "
          "checkpoints x 3/1, the noisy readings once), minutes, and the noisy readings' share\n")
    print("| network | projected minutes | vs BN | noisy readings |")
    print("|---|---|---|---|")
    projected = {}
    for m in RUN_MODELS:
        p = parts[m]
        steps = p["training steps"] + p["read-back and tables"]
        projected[m] = (steps * scale + p["test-set evaluation"] * 9 / evals + p["checkpoints"] * 3
                        + p["noisy readings"] + max(0.0, mid[m] - steps - sum(p[k] for k in (
                            "test-set evaluation", "checkpoints", "noisy readings")))) / 60
    for m in RUN_MODELS:
        share = parts[m]["noisy readings"] / 60 / projected[m]
        print(f"| {m} | {projected[m]:.1f} | {projected[m] / projected['vgg_bn']:.2f}x | {share:.1%} |")


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="bf16,fp32", help="training-step table: precisions, comma-separated")
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    ap.add_argument("--run-steps", type=int, default=0, help="whole short runs of this many steps (0: skip)")
    ap.add_argument("--run-repeats", type=int, default=1)
    ap.add_argument("--run-precision", default="bf16", help="the whole runs' precision (reproduce.sh's)")
    ap.add_argument("--data-root", default="", help="real CIFAR-10 for the whole runs (else synthetic data)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.width, args.batch, args.steps, args.repeats, args.run_steps = 0.0625, 8, 1, 1, 4
    keep_freed_memory()  # as train() does on a CPU: large blocks reused, not page-faulted in again
    print(f"CPU: {_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    step_table(args)
    if args.run_steps:
        run_table(args)


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"

