"""Per-layer activation distributions (Figures 1c, 2, 6, 8 of the paper).

What is observed: the output of every numbered layer at each of ``probe.points`` (``models.blocks.
POINTS``: ``pre_relu``, the default, ``pre_norm`` or ``post_relu``); each (point, layer) is a "site"
with its own records, and every row says its point. For every layer a fixed set of
``channels_per_layer`` channels is drawn once from the run seed, independently of the model variant
and the same at every point, so runs with the same seed watch the same units. Rank 0 is "the random
activation" the paper plots.

What is recorded (all statistics over the batch and, for conv layers, height and width):

- every step: mean and (biased) variance of each sampled channel;
- step 1 and every ``probe.every`` steps: min and max of each sampled channel, a histogram of each
  sampled channel on ``hist_bins`` equal bins of that channel's own range at that step (edges made
  on the device and stored with the counts; non-finite values counted apart, so counts plus
  ``nonfinite`` always sum to N*H*W; see ``statistics.histogram``), and whole-layer
  summaries: mean, std, fraction of values <= 0, and quantiles 1/5/25/50/75/95/99 from a fixed
  random sample of ``summary_sample`` distinct positions (drawn once per layer from the seed).

How: forward hooks registered at construction (before any ``torch.compile``) compute these under
no_grad on the device; ``prepare`` does their one-off set-up in an evaluation-mode forward first, so
that compiled code and CUDA graphs only ever see the per-step work. At the end of a forward the
records of all layers become one small tensor each (moments: channels x 2; on full steps also the
summaries and the histograms) appended to a list, and ``flush`` copies everything to the host in one
transfer; ``activation_rows.py`` turns them into one table append per flush. Under CUDA graphs
(``trainer.cuda_graph``) the hooks run once per graph, at capture: ``capture(full)`` keeps the
step's records as static outputs of the plain (or histogram/summary) graph and ``replayed(step,
full)`` keeps a copy of them after each replay. The probe draws no random
numbers from any training stream, so probes on or off give the same training trajectory.

Off the critical path: inside ``capture`` on a GPU the hooks' kernels run on a side stream that
forks from the training stream at each probed layer and joins it again at ``join()``, which the
graphed step calls after the optimiser's update. The graph then holds them as a parallel branch
that fills the gaps between the forward and backward kernels instead of adding ~30 small kernels
(a gather and a ``var_mean`` per layer, 0.2 ms on an H200) to every step's chain. The probed
activations are held until the join so that no kernel of the step can reuse their memory early.

With ``probe.batch=fixed`` the statistics come from one held training batch instead of the step's
batch: after each step's update the probe runs that batch forward in training mode (so BN uses
batch statistics), then restores every buffer (BN and l_p running statistics), and the noisy
BN's noise for it comes from the probe's own generator.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..config import ProbeConfig
from ..models.blocks import Block
from ..models.noisy_bn import noise_off, noisy_layers
from .activation_rows import QUANTILES, ActivationRows, full_record
from .fixed_batch import FixedBatch
from .statistics import histogram, quantile_positions, quantiles, sample_positions


def sample_channels(widths: list[int], per_layer: int, seed: int) -> list[torch.Tensor]:
    """The sampled channel indices of every layer; depends only on the seed and the layer widths."""
    g = torch.Generator().manual_seed(seed * 1000 + 3)
    return [torch.randperm(w, generator=g)[: min(per_layer, w)] for w in widths]


class ActivationProbe:
    def __init__(self, model: nn.Module, cfg: ProbeConfig, seed: int, data=None, tensorboard_rows=None):
        """``tensorboard_rows(steps)``: which recorded steps also become TensorBoard points (the
        schedule's ``tensorboard_rows``; None: every one). ``data``: for ``probe.batch=fixed``."""
        self.cfg = cfg
        self.layers = list(model.blocks)
        widths = [_out_features(b) for b in self.layers]
        self.layer_channels = sample_channels(widths, cfg.channels_per_layer, seed)  # the same at every point
        # a site is (point, layer index): points in config order, layers in order within each
        self.sites = [(point, k) for point in cfg.points for k in range(len(self.layers))]
        self.channels = [self.layer_channels[k] for _, k in self.sites]  # each site's sampled channels
        self._sample_gen = torch.Generator().manual_seed(seed * 1000 + 4)
        self._seed = seed
        # per layer, set up at its first site's first forward and shared by its other points: the
        # sampled channels on the device, the whole-layer quantile sample, and with
        # probe.unit=position each sampled channel's (h, w) (host copy: written to probe_channels)
        L, n = len(self.layers), len(self.sites)
        self._device_channels: list[torch.Tensor | None] = [None] * L
        self._sample_idx: list[torch.Tensor | None] = [None] * L
        self._quantile_at: list[tuple | None] = [None] * L
        self.positions: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * L
        self._device_positions: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * L
        self.active = False
        self.full_stats = False
        self.calls = 0  # hook invocations that recorded something, counted per forward (tests count them)
        self._current: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n  # this forward, per site
        self._current_full: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n
        # pending records, in activation_rows.py's layout: per recorded step the moments, per full step
        # the summaries and channel ranges, and the histograms
        self._moments: list[torch.Tensor] = []
        self._full: list[torch.Tensor] = []
        self._hists: list[torch.Tensor] = []
        # what a CUDA graph writes at each replay: {full_stats: (moments, full, hists)}, see capture()
        self.captured: dict[bool, tuple | None] = {}
        self._steps: list[int] = []
        self._full_steps: list[int] = []
        self.rows = ActivationRows(self.sites, self.layer_channels, cfg, self.positions, tensorboard_rows)
        # under torch.compile a noisy BN breaks the graph (its draws run eagerly); the hook after it
        # would then be compiled on its own, once per layer, past Dynamo's recompile limit: run it eagerly
        eager_hooks = bool(noisy_layers(model))
        self.handles = [self._point(self.layers[k], point).register_forward_hook(self._hook(s, k, eager_hooks))
                        for s, (point, k) in enumerate(self.sites)]
        self._side: torch.cuda.Stream | None = None  # the hooks' stream inside capture(), on a GPU
        self._overlap = False  # inside capture(), with probe.side_stream: CUDA hooks run on the side stream
        self._held: list[torch.Tensor] = []  # activations the side stream reads, until join()
        self.fixed_batch = FixedBatch(data, seed) if cfg.batch == "fixed" else None

    @staticmethod
    def _point(block: nn.Module, point: str) -> nn.Module:
        if not isinstance(block, Block):
            return block  # the output Linear: its output is the logits, at every point
        return block.at(point)

    # --- per step: what is due comes from the schedule (train/schedule.py), never decided here ----
    @contextlib.contextmanager
    def observe(self, step: int, full: bool = False):
        """Wrap the training forward of ``step``: hooks record during it (train-batch mode), with the
        histograms and summaries if ``full``."""
        self.full_stats = full
        self.active = self.fixed_batch is None
        try:
            yield
        finally:
            self.active = False
        if self.fixed_batch is None:
            self._commit(step, self._stack_current())

    @contextlib.contextmanager
    def capture(self, full: bool = False):
        """Wrap the forward that a CUDA graph captures (or its warm-up), for a plain step or, with
        ``full``, a histogram/summary step: its records stay in static tensors (``captured[full]``)."""
        self.full_stats, self.active = full, self.fixed_batch is None
        self._overlap = self.cfg.side_stream
        try:
            yield
        finally:
            self.active = self._overlap = False
        with torch.cuda.stream(self._side) if self._held else contextlib.nullcontext():
            self.captured[full] = self._stack_current() if self.fixed_batch is None else None

    def join(self) -> None:
        """End of a step that ``capture`` wrapped: the training stream waits for the probes' side
        stream (a graph capture must end with every forked stream joined), then lets go of the
        activations it read. A no-op where the hooks ran on the training stream."""
        if self._held:
            torch.cuda.current_stream(self._held[0].device).wait_stream(self._side)
            self._held.clear()

    def replayed(self, step: int, full: bool = False) -> None:
        """After a replay of the step captured with ``full``: keep a copy of what the graph wrote."""
        record = self.captured.get(full)
        if record is not None:
            self._commit(step, tuple(t.clone() if t is not None else None for t in record))

    def _stack_current(self) -> tuple:
        """This forward's records: (moments, full, hists); full and hists are None on plain steps."""
        if any(c is None for c in self._current) or (self.full_stats and any(c is None for c in self._current_full)):
            raise RuntimeError("activation probe: a layer's hook did not fire during the forward")
        self.calls += len(self._current)
        record = self.rows.stack(self._current, self._current_full if self.full_stats else None)
        self._current, self._current_full = [None] * len(self.sites), [None] * len(self.sites)
        return record

    def _commit(self, step: int, record: tuple) -> None:
        moments, full, hists = record
        self._moments.append(moments)
        self._steps.append(step)
        if full is not None:
            self._full.append(full)
            self._hists.append(hists)
            self._full_steps.append(step)

    @torch.no_grad()
    def observe_fixed(self, model: nn.Module, step: int, full: bool = False) -> None:
        """Fixed-batch mode, after the step's update: forward the held batch with probes on (and the
        histograms and summaries if ``full``). A no-op in train-batch mode."""
        if self.fixed_batch is None:
            return
        self.full_stats = full
        self.fixed_batch.forward(model, self._recording)
        self._commit(step, self._stack_current())

    @contextlib.contextmanager
    def _recording(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False

    @torch.no_grad()
    def prepare(self, model: nn.Module, images: torch.Tensor) -> None:
        """Set up every layer's device state (its sampled channels, its quantile sample) from one
        evaluation-mode forward of a training-sized batch: no running statistic, noise or training
        RNG is touched. Called before ``torch.compile`` and CUDA-graph capture, so that neither ever
        meets the one-off set-up (under compile it broke the graph in every layer's hook)."""
        was_training = model.training
        try:
            with noise_off(model):  # also where model.noise.in_eval adds it in evaluation mode
                model.eval()(images)
        finally:
            model.train(was_training)

    def _hook(self, s: int, k: int, eager: bool):
        """The forward hook of site ``s`` (layer index ``k``)."""
        def hook(module, inputs, output):
            if self._device_channels[k] is None:  # once per layer: in prepare(), or else the first forward
                self._set_up(k, output)
            if self.active:
                x = output.detach()
                if self._overlap and x.is_cuda and not torch.compiler.is_compiling():
                    self._record_aside(s, k, x)
                else:
                    self._record(s, k, x)

        return torch.compiler.disable(hook) if eager else hook

    def _set_up(self, k: int, x: torch.Tensor) -> None:
        channels = self.layer_channels[k]
        self._device_channels[k] = channels.to(x.device)
        n = min(self.cfg.summary_sample, x.numel())
        self._sample_idx[k] = sample_positions(x.numel(), n, self._sample_gen).to(x.device)
        self._quantile_at[k] = quantile_positions(n, QUANTILES, x.device, torch.float32)
        if self.cfg.unit == "position" and x.dim() == 4:
            g = torch.Generator().manual_seed(self._seed * 1000 + 6 + k)
            self.positions[k] = (torch.randint(x.shape[2], (len(channels),), generator=g),
                                 torch.randint(x.shape[3], (len(channels),), generator=g))
            self._device_positions[k] = tuple(t.to(x.device) for t in self.positions[k])

    def _record_aside(self, s: int, k: int, x: torch.Tensor) -> None:
        """``_record`` on the side stream, after everything the training stream has queued so far."""
        if self._side is None:
            self._side = torch.cuda.Stream(x.device)
        self._side.wait_stream(torch.cuda.current_stream(x.device))
        self._held.append(x)
        with torch.cuda.stream(self._side):
            self._record(s, k, x)

    def _record(self, s: int, k: int, x: torch.Tensor) -> None:
        """Site ``s``'s statistics of ``x``, the output of layer index ``k`` at the site's point."""
        c = len(self.channels[s])
        if self._device_positions[k] is not None:  # probe.unit=position: c x N, one (h, w) per channel
            h, w = self._device_positions[k]
            chans = x[:, self._device_channels[k], h, w].t().float()
        else:  # c x (N*H*W): one gather, then float (a bf16 activation is converted 8 channels, not whole)
            chans = x.transpose(0, 1)[self._device_channels[k]].reshape(c, -1).float()
        if chans.is_cuda:  # one fused kernel; per-step launches are what a GPU step pays for
            var, mean = torch.var_mean(chans, dim=1, correction=0)
        else:  # var_mean is ~10x slower than two plain passes on CPU; two passes avoid E[x^2] - E[x]^2
            mean = chans.mean(1)
            var = (chans - mean[:, None]).square_().mean(1)
        self._current[s] = (mean, var)  # counted in _stack_current: a Python int bumped in here would
        # be a constant to torch.compile, recompiled at every step until its limit, then left uncompiled
        if not self.full_stats:
            return
        flat = x.float().reshape(-1)  # float: no-op in fp32; only these steps read a whole bf16 layer
        sample = flat[self._sample_idx[k]]
        qs = quantiles(sample, self._quantile_at[k])
        layer = torch.stack([flat.mean(), flat.std(), (flat <= 0).float().mean()])
        ranges = torch.stack([chans.amin(1), chans.amax(1)], 1)
        self._current_full[s] = (full_record(layer, qs, ranges), histogram(chans, self.cfg.hist_bins))

    # --- flush ---------------------------------------------------------------------------------
    def flush(self, recorder) -> None:
        """Copy everything pending to the host in one transfer and hand it to the recorder."""
        collected = self.collect(recorder)
        if collected is not None:
            tensor, write = collected
            write(tensor.cpu().numpy())

    def collect(self, recorder):
        """Everything pending as one device tensor and the function that writes it once it is on the
        host (``readback.ReadBack`` copies it without waiting); None if nothing is pending."""
        if not self._steps:
            return None
        if len(self._moments) != len(self._steps):
            raise RuntimeError("activation probe: recorded steps and statistics are out of step")
        tensor = self.rows.pack(self._moments, self._full, self._hists)
        steps, full_steps = np.asarray(self._steps), np.asarray(self._full_steps)
        self._moments, self._full, self._hists, self._steps, self._full_steps = [], [], [], [], []
        return tensor, lambda host: self.rows.write(recorder, steps, full_steps, host)

    def tensorboard_layout(self) -> dict:
        return self.rows.tensorboard_layout()

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue exactly (everything else follows from the seed)."""
        noise = self.fixed_batch.noise_state() if self.fixed_batch is not None else None
        return {"channels_written": self.rows.channels_written,
                "noise": noise if noise is not None else torch.zeros(0, dtype=torch.uint8)}

    def load_state_dict(self, state: dict) -> None:
        self.rows.channels_written = bool(state["channels_written"])
        if self.fixed_batch is not None and len(state["noise"]):
            self.fixed_batch.load_noise_state(state["noise"])

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _out_features(block: nn.Module) -> int:
    layer = block.layer if isinstance(block, Block) else block
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
