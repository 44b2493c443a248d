#!/usr/bin/env python
"""Host time per step of the whole training loop, when the step itself costs nothing.

    python scripts/bench.py host                  # probes off and on, 3000 steps, 3 repeats each
    python scripts/bench.py host --steps 5000 --repeats 5

On a GPU every training step replays a CUDA graph: the device does the work, the host only feeds
it (the next batch, the copies into the graph's inputs, the probes' records, flushes to tables and
TensorBoard). If that host work per step is shorter than the device's step (~4.6 ms for VGG-16 at
batch 128 on an H200), the host runs ahead and the GPU never waits. This runs ``train()`` on the
CPU with the graph replaced by one whose replay does nothing (capture still runs the step once, so
the probes' records have their real shapes), batch 2 of synthetic data so that gathering a batch is
nearly free: what remains is the loop's own host time. Alternating runs, median ms per step.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from ics_study.compose import compose
from ics_study.train import train
from ics_study.train.graphed_step import GraphedStep

from .common import alternate, median, rounds, table


class FreeReplay(GraphedStep):
    """A graph whose replay costs nothing: its outputs keep the values of the one captured step."""

    @contextlib.contextmanager
    def _warm_up_stream(self):
        yield

    def _record(self, full: bool):
        self.metrics[full] = self._step(self.static_x, self.static_y, full).detach()

        class Graph:
            def replay(self) -> None:
                pass

        return Graph()


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. logger.tensorboard=false")
    args = ap.parse_args(argv)
    base = ["data=synthetic", "data.num_train=512", "data.num_test=64", "data.batch_size=2", "data.eval_batch_size=64",
            "model=vgg_bn_noise", "model.width=0.0625", f"trainer.max_steps={args.steps}",
            f"trainer.eval_every={args.steps}", "trainer.progress_bar=false", "trainer.device=cpu", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        def run(probes: bool):
            def one(r: int) -> float:
                cfg = compose(base + [f"probe.enabled={probes}"])
                summary = train(cfg, Path(tmp) / f"{r}_{probes}", graphed_step=FreeReplay)
                return 1e3 * cfg.data.batch_size / summary["train_images_per_s"]
            return one

        ms = alternate({"probes off": run(False), "probes on": run(True)}, args.repeats)
    print(f"\ntraining loop around a free graph replay, {args.steps} steps x {args.repeats} alternating runs, "
          "default probes, flush every trainer.log_every steps, tables and TensorBoard on")
    print(table(["setting", "host ms per step (median)", "runs"],
                [[name, f"{median(vals):.3f}", rounds(vals, "{:.3f}")] for name, vals in ms.items()]))
