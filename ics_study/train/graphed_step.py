"""Training steps captured as CUDA graphs and replayed (``trainer.cuda_graph``).

Why: at batch 128 a VGG-16 step is a few hundred small kernels. Launched one by one from Python
(eager PyTorch) the GPU waits for the host: on an H100 the eager loop ran at 1-2% of the chip.
A CUDA graph launches the whole step -- forward, the probes' per-step moments, loss, backward,
SGD update -- as one unit, so the GPU runs back to back.

What is captured: exactly the eager step of ``step.py`` for a batch held in static input tensors.
Each replay copies the step's batch into them, replays, and copies out the (loss, accuracy) pair
and the probes' per-step moments. The noisy BN's generator is registered with the graph, so each
replay draws fresh noise from the same stream, at the same offsets as eager steps would.

Two graphs: the plain step, and the probes' histogram/summary step (every ``probe.every`` steps:
the same step plus histograms, quantiles and layer summaries, ~30 more small kernels per layer,
host-bound when launched eagerly). Each has its own memory pool and gradient buffers, so neither can
overwrite what the other keeps.

What is not captured: steps with an ICS or landscape measurement (several forwards and backwards on
copies of the weights) and the fixed-batch probe forward run eagerly on the same weights (eager steps
allocate their own gradients). Evaluation is eager.

Capture needs a steady state: the optimiser's state must already exist (the momentum buffers
after a first eager step), and the kernels must be chosen (cudnn autotuning) and every per-stream
handle created before capture. So ``capture`` runs warm-up steps on the very stream it then captures
on (warming up on another stream made the first capture of a process fail on an H100), and then puts
weights, buffers, optimiser state and the noise generator back exactly as they were: warm-up never
changes training. The caller must drop every reference to an earlier step's autograd graph (its loss
and outputs) first: a live gradient accumulator from the default stream breaks the capture. A failed
capture leaves CUDA state (the registered generator, the memory pool) unusable, so it stops the run
with one line that names ``trainer.cuda_graph=off``.
"""

from __future__ import annotations

import contextlib
from contextlib import nullcontext

import torch
from torch import nn

from ..config import cuda_graph_setting as setting
from ..probes.replay import put_back
from .precision import autocast

WARMUP_STEPS = 3  # as in PyTorch's CUDA-graph recipe: lazy initialisation and autotuning happen here


def wanted(value: str, device: torch.device, compile_mode: str | None) -> bool:
    """``trainer.cuda_graph``: auto = on for CUDA with an eager model. With torch.compile, auto is off
    (reduce-overhead makes its own graphs). ``on`` captures a compiled model too: the compiled forward
    and backward are captured after the warm-up has compiled them (on the CPU stand-in this trains
    exactly like compiled eager, tests/unit/train/test_cuda_graph.py; not yet run on a GPU)."""
    chosen = setting(value)
    if chosen == "off" or device.type != "cuda":
        return False
    if chosen == "on":
        return True
    return compile_mode is None


def optimizer_ready(optimizer: torch.optim.Optimizer) -> bool:
    """True when a step no longer creates optimiser state (SGD with momentum creates its buffers on
    the first step; a graph captured before that would replay the creation, not the update)."""
    for group in optimizer.param_groups:
        if group.get("momentum", 0) and any("momentum_buffer" not in optimizer.state[p] for p in group["params"]):
            return False
    return True


class GraphedStep:
    def __init__(self, model: nn.Module, forward, optimizer, task, probe, noise: torch.Generator | None,
                 precision: str):
        self.model, self.forward, self.optimizer, self.task, self.probe = model, forward, optimizer, task, probe
        self.noise, self.precision = noise, precision
        # the histogram/summary step gets its own graph unless the probes watch a fixed batch instead
        self.kinds = [False, True] if probe is not None and probe.fixed_batch is None else [False]
        self.graphs: dict[bool, torch.cuda.CUDAGraph] = {}  # {full_stats: graph}
        self.metrics: dict[bool, torch.Tensor] = {}  # each graph's static (loss, accuracy) output
        self.stream: torch.cuda.Stream | None = None  # warm-up and capture both run on it
        self.static_x = self.static_y = None

    @property
    def graph(self) -> torch.cuda.CUDAGraph | None:
        """The plain step's graph; None until ``capture``."""
        return self.graphs.get(False)

    def kind(self, full_stats: bool) -> bool:
        """The graph a step runs: the histogram/summary one on the probes' full steps, unless the
        probes watch a fixed batch (then the training step records nothing and is always plain)."""
        return full_stats and True in self.kinds

    def replays(self, full_stats: bool) -> bool:
        """Whether a step with (``True``) or without probe histograms/summaries has a graph."""
        return full_stats in self.graphs

    def _step(self, x: torch.Tensor, y: torch.Tensor, full: bool = False) -> torch.Tensor:
        """The training step on (x, y), with the probes' full statistics if ``full``; returns (loss,
        accuracy) as one device tensor."""
        # no autocast weight cache inside a graph: its casts would be captured once, then go stale
        with self.probe.capture(full) if self.probe is not None else nullcontext(), \
                autocast(x.device, self.precision, cache=False):
            out = self.forward(x)
        loss = self.task.loss(out, y)
        loss.backward()
        self.optimizer.step()
        if self.probe is not None:
            self.probe.join()  # the probes' side stream (their kernels ran beside forward and backward)
        with torch.no_grad():
            acc = self.task.accuracy(out.detach(), y) if self.task.accuracy is not None else torch.full_like(loss, float("nan"))
            return torch.stack([loss.detach().float(), acc.float()])

    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [p.data for p in self.model.parameters()] + list(self.model.buffers())
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        return tensors

    @torch.no_grad()
    def _snapshot(self):
        saved = [(t, t.clone()) for t in self._state_tensors()]
        noise = self.noise.get_state() if self.noise is not None else None
        return saved, noise

    @torch.no_grad()
    def _restore(self, snapshot) -> None:
        saved, noise = snapshot
        for t, copy in saved:
            put_back(t, copy)
        if noise is not None:
            self.noise.set_state(noise)

    def capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Warm up on (x, y), restore every state, capture the steps. Training state is unchanged."""
        snapshot = self._snapshot()
        with self._warm_up_stream():
            for full in self.kinds:
                for _ in range(WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._step(x, y, full)
        self._restore(snapshot)
        self.static_x, self.static_y = x.clone(), y.clone()
        for full in self.kinds:
            # backward inside each graph allocates its own grads, in that graph's own pool: the plain
            # graph keeps writing its (now unreferenced) grads, which nothing else can be given
            self.optimizer.zero_grad(set_to_none=True)
            self.graphs[full] = self._record(full)

    @contextlib.contextmanager
    def _warm_up_stream(self):
        self.stream = torch.cuda.Stream()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            yield
        torch.cuda.current_stream().wait_stream(self.stream)

    def _record(self, full: bool) -> torch.cuda.CUDAGraph:
        """Capture one step on the static tensors (nothing runs now; each replay runs it)."""
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        if self.noise is not None:  # both graphs advance the one noise stream, as eager steps do
            graph.register_generator_state(self.noise)
        with torch.cuda.graph(graph, stream=self.stream):  # a private memory pool per graph
            self.metrics[full] = self._step(self.static_x, self.static_y, full)
        return graph

    def __call__(self, x: torch.Tensor, y: torch.Tensor, full: bool = False) -> torch.Tensor:
        """One training step on (x, y) by replay (with the probes' full statistics if ``full``);
        returns the (loss, accuracy) tensor, which the next replay overwrites: copy it before then."""
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graphs[full].replay()
        return self.metrics[full]
