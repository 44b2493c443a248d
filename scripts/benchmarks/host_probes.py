#!/usr/bin/env python
"""Host time the activation probes add to a run: the part of their cost a GPU cannot hide.

    python scripts/bench.py host-probes                 # VGG-16 width 1, 1000 steps, 3 repeats
    python scripts/bench.py host-probes --steps 3000 --repeats 5 --no-tensorboard

On a GPU a CUDA-graph step takes ~4 ms and the host only has to launch it; every millisecond the
host spends elsewhere (writing tables and TensorBoard events at a flush, one-off set-up) is time the
GPU may wait. This measures that host time without a GPU: the probe of a VGG-16 gets its per-step
records the way a replayed graph hands them over (``capture`` -> ``replayed``), with random values
of the right shapes, and is flushed every ``trainer.log_every`` steps through a real Recorder into a
temporary folder, exactly as the training loop does. Printed (medians of the repeats, each after one
warm-up flush): milliseconds per step the training thread spends in flushes; CPU milliseconds per
step of the whole process, every thread (TensorBoard's event writer has its own, and it holds the
GIL while it checksums), from the per-step copies to everything on disk; and the one-off set-up of
the quantile sample positions, timed side by side with an O(n) ``randperm``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ics_study.compose import compose
from ics_study.models import build_model
from ics_study.probes import ActivationProbe
from ics_study.probes.statistics import histogram, sample_positions
from ics_study.recording.recorder import Recorder
from ics_study.train.schedule import itstime, tensorboard_rows

from .common import alternate, median, rounds, table


def layer_sizes(model, probe: ActivationProbe, batch: int) -> list[int]:
    """Values per probed layer for one batch (what the quantile sample is drawn from)."""
    sizes = []
    hooks = [probe._point(probe.layers[k], point).register_forward_hook(
        lambda m, i, o: sizes.append(o.numel() * batch // o.shape[0])) for point, k in probe.sites]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    return sizes


def flush_time(probe: ActivationProbe, recorder: Recorder, steps: int, log_every: int) -> tuple[float, float]:
    """Over ``steps`` replayed steps after one warm-up flush: seconds the training thread spends in
    flushes, and CPU seconds of the whole process (every thread: TensorBoard writes its event file
    on its own thread, holding the GIL) until everything is on disk."""
    C = sum(len(c) for c in probe.channels)
    full_size = sum(probe.rows.full_sizes)
    probe.captured = {False: (torch.randn(C, 2), None, None),
                      True: (torch.randn(C, 2), torch.randn(full_size), histogram(torch.randn(C, 4096), probe.cfg.hist_bins))}
    spent, cpu_start = 0.0, None
    for step in range(1, steps + log_every + 1):
        probe.replayed(step, full=itstime(step, probe.cfg.every, first=True))
        if step % log_every == 0:
            start = time.perf_counter()
            tensor, write = probe.collect(recorder)
            write(tensor.double().numpy())
            recorder.flush()
            if step > log_every:
                spent += time.perf_counter() - start
            else:
                recorder.flush(force=True)  # the warm-up flush's writes are not counted
                cpu_start = time.process_time()
    recorder.flush(force=True)  # tables written and the TensorBoard writer's queue drained
    return spent, time.process_time() - cpu_start


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-tensorboard", action="store_true", help="tables only")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the training thread's view: one core for Python
    cfg = compose([f"model.width={args.width}", "model=vgg_bn_noise"] + (["logger.tensorboard=false"] if args.no_tensorboard else []))
    model = build_model(cfg.model)

    probe = ActivationProbe(model, cfg.probe, seed=0)
    sizes = layer_sizes(model, probe, cfg.data.batch_size)
    probe.remove()
    k = cfg.probe.summary_sample
    # the quantile sample's positions: sample_positions (what the probe uses) against the plain way
    setup = {"randperm(n)[:k]": lambda n, g: torch.randperm(n, generator=g)[:k],
             "sample_positions": lambda n, g: sample_positions(n, min(k, n), g)}

    def drawn(draw):
        def one(r: int) -> float:
            g = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            for n in sizes:
                draw(n, g)
            return time.perf_counter() - start
        return one

    setup_s = alternate({name: drawn(draw) for name, draw in setup.items()}, args.repeats)

    def flushes(r: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            probe = ActivationProbe(model, cfg.probe, seed=0, tensorboard_rows=tensorboard_rows(cfg.probe))
            recorder = Recorder(Path(tmp), cfg.logger)
            spent, cpu = flush_time(probe, recorder, args.steps, cfg.trainer.log_every)
            recorder.flush(force=True)
            recorder.abandon()  # closes the TensorBoard writer
            probe.remove()
        return 1e3 * spent / args.steps, 1e3 * cpu / args.steps

    timed = alternate({"flushes": flushes}, args.repeats)["flushes"]
    per_step, cpu_per_step = [t for t, _ in timed], [c for _, c in timed]

    print(f"\nVGG-16 width {args.width}, batch {cfg.data.batch_size}, {len(sizes)} probed layers x "
          f"{cfg.probe.channels_per_layer} channels, flush every {cfg.trainer.log_every} steps, "
          f"histograms every {cfg.probe.every}, TensorBoard {'off' if args.no_tensorboard else 'on'}")
    rows = [[f"flushes (tables{'' if args.no_tensorboard else ' + TensorBoard'}), per step",
             f"{median(per_step):.3f} ms", rounds(per_step, "{:.3f}")],
            ["all probe bookkeeping, CPU time of every thread (TensorBoard's writer included), per step",
             f"{median(cpu_per_step):.3f} ms", rounds(cpu_per_step, "{:.3f}")]]
    rows += [[f"once per run: quantile sample positions, {name}", f"{1e3 * median(vals):.1f} ms",
              rounds([1e3 * v for v in vals])] for name, vals in setup_s.items()]
    print(table(["host work", "median", "runs"], rows))
