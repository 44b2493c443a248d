"""The CPU stand-in for a CUDA graph, passed as ``train(..., graphed_step=ReplayByRerun)``."""

from __future__ import annotations

import contextlib

import torch

from ics_study.train.graphed_step import GraphedStep


class ReplayByRerun(GraphedStep):
    """A CPU stand-in for the CUDA graph: capture records nothing and each replay runs the captured
    step again on the static inputs, into the same static outputs. Everything around the graph --
    warm-up and restore, static copies, the probes' capture/replay bookkeeping, eager steps between
    replays, read-back -- is then the real code, and must train exactly like the eager loop."""

    runs = {False: 0, True: 0}  # replays of the plain and of the histogram/summary step

    @contextlib.contextmanager
    def _warm_up_stream(self):
        yield

    def _record(self, full):
        self.metrics[full] = torch.zeros(2)
        step = self

        class Graph:
            def replay(self):
                ReplayByRerun.runs[full] += 1
                step.optimizer.zero_grad(set_to_none=True)  # a graph overwrites its gradients
                step.metrics[full].copy_(step._step(step.static_x, step.static_y, full))

        return Graph()
