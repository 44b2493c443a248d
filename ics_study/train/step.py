"""One training step, however it runs: a CUDA-graph replay, the eager step, or the eager step with
an ICS or landscape measurement around its update. The loop calls ``TrainStep(step, x, y, due,
row)`` and never chooses; the step writes (loss, accuracy) of batch ``step`` into ``row``, a
device tensor (no host sync).

Protocol (PROTOCOL.md): forward and backward on batch t, then update t; the loss and accuracy of
step t are those of batch t before its update.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch

from ..errors import UserError
from ..probes import ICSProbe, LandscapeProbe, PendingScalars, Replay
from .graphed_step import GraphedStep, optimizer_ready, wanted
from .precision import autocast
from .schedule import Due


class TrainStep:
    def __init__(self, run, graphed_step: type | None = None):
        """``run``: the Run whose model, optimiser, task, probes and noise stream the step uses;
        ``graphed_step``: the class that replays steps (None: ``GraphedStep`` where one is wanted)."""
        cfg, t = run.cfg, run.cfg.trainer
        self.model, self.forward, self.optimizer, self.task = run.model, run.forward, run.optimizer, run.task
        self.probe, self.device, self.precision = run.probe, run.device, t.precision
        self.ics = ICSProbe(cfg.ics)
        self.landscape = LandscapeProbe(cfg.landscape, cfg.optim.lr)
        self.sharpness = run.sharpness  # None unless sharpness.enabled (its warm start is checkpointed)
        self.replay = Replay(run.model, run.noise)  # measurements redo forwards with the step's own noise
        self.measured = PendingScalars()  # ICS and landscape values, read back at each flush
        self.graphed = None
        if graphed_step is None and wanted(t.cuda_graph, run.device, t.compile_mode if t.compile else None):
            graphed_step = GraphedStep
        if graphed_step is not None:
            self.graphed = graphed_step(run.model, run.forward, run.optimizer, run.task, run.probe,
                                       run.noise if run.uses_noise else None, t.precision)

    @property
    def uses_graph(self) -> bool:
        return self.graphed is not None and self.graphed.graph is not None

    def __call__(self, step: int, x: torch.Tensor, y: torch.Tensor, due: Due, row: torch.Tensor) -> None:
        graphed = self.graphed
        if graphed is not None and not due.measuring:
            if graphed.graph is None and optimizer_ready(self.optimizer):  # capture once the state is steady
                _capture(graphed, x, y)
            full = graphed.kind(due.full_stats)
            if graphed.replays(full):
                row.copy_(graphed(x, y, full=full))
                if self.probe is not None:
                    self.probe.replayed(step, full=full)
                return
        self._eager(step, x, y, due, row)

    def _eager(self, step: int, x: torch.Tensor, y: torch.Tensor, due: Due, row: torch.Tensor) -> None:
        if due.measuring:
            self.replay.mark_step_start()
        with self.probe.observe(step, due.full_stats) if self.probe is not None else nullcontext(), \
                autocast(self.device, self.precision):
            out = self.forward(x)
        loss = self.task.loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        loss_now = functools.partial(self._loss_at_current_weights, x, y)
        exact = self._fp32_gradient(loss_now) if (due.landscape or due.ics) and self.precision != "fp32" else None
        if due.landscape:
            self.measured.add(step, self.landscape.measure(self.model, loss_now, self.replay, exact))
        if due.sharpness:
            self.measured.add(step, self.sharpness.measure(self.model, loss_now, self.replay))
        if due.ics:
            self.measured.add(step, self.ics.step(self.model, self.optimizer, loss_now, self.replay, exact))  # takes the step
        else:
            self.optimizer.step()
        with torch.no_grad():
            row[0] = loss.detach()
            if self.task.accuracy is not None:
                row[1] = self.task.accuracy(out.detach(), y)
        del out, loss  # free this step's autograd graph now (a CUDA graph capture needs that)

    def _loss_at_current_weights(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # ICS and the landscape always compute in fp32: under bf16 a weight update below ~0.4% of a
        # weight vanishes from a pass (the standard net's ICS at lr 0.01 is ~1e-3). Cost: these passes
        # run at fp32's speed (~1.7x bf16's on the CPU), a few per cent of a cpu_small run.
        return self.task.loss(self.model(x), y)

    def _fp32_gradient(self, loss_now) -> dict[torch.nn.Parameter, torch.Tensor]:
        """The step's gradient once more, in fp32, at the same weights, batch and noise: the G of ICS
        and the g of the landscape when training runs in bf16 (the update keeps training's own)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        with self.replay.isolated():
            self.replay.rewind()
            grads = torch.autograd.grad(loss_now(), params)
        return dict(zip(params, grads))


def _capture(graphed: GraphedStep, x, y) -> None:
    """Capture the graphed steps. A failed capture leaves CUDA unusable for this process (the noise
    generator stays in capture mode, the graph's memory pool keeps growing): stop with one line."""
    try:
        graphed.capture(x, y)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        side = graphed.probe is not None and graphed.probe.cfg.side_stream
        raise UserError(f"CUDA graph capture failed ({type(e).__name__}: {first}); rerun with trainer.cuda_graph=off "
                        "(same numbers, slower)" + (" or probe.side_stream=false" if side else "") + " and please report it") from e
