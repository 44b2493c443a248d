"""Per-layer activation distributions (Figures 1c, 2, 6, 8 of the paper).

What is observed: the output of every numbered layer at ``probe.point`` -- ``pre_relu`` (default:
the BN+noise output in the noisy net, the conv output in the standard net, the logits for the
output layer) or ``post_relu``. For every layer a fixed set of ``channels_per_layer`` channels is
drawn once from the run seed, independently of the model variant, so vgg / vgg_bn / vgg_bn_noise
runs with the same seed watch the same units. Rank 0 is "the random activation" the paper plots.

What is recorded (all statistics over the batch and, for conv layers, height and width):

- every step: mean and (biased) variance of each sampled channel;
- step 1 and every ``probe.every`` steps: min and max of each sampled channel, a histogram of each
  sampled channel on fixed bins (``hist_bins`` equal bins on [-hist_range, hist_range]; values
  beyond the range are counted in the end bins, so counts always sum to N*H*W), and whole-layer
  summaries: mean, std, fraction of values <= 0, and quantiles 1/5/25/50/75/95/99 from a fixed
  random sample of ``summary_sample`` positions.

How: forward hooks registered at construction (before any ``torch.compile``) compute these under
no_grad on the device; at the end of a forward the moments of all layers become one small
(channels x 2) tensor appended to a list, and ``flush`` copies everything to the host in one
transfer. Under a CUDA graph (``trainer.cuda_graph``) the hooks run once, at capture: ``capture()``
returns that step tensor as a static output of the graph and ``replayed(step)`` keeps a copy of it
after each replay. The probe draws no random numbers from any training stream, so probes on or off
give the same training trajectory.

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
from ..models.noisy_bn import NoisyBatchNorm
from ..storage import labels
from .replay import Replay
from .statistics import histogram, quantile_positions, quantiles

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
LAYER_STATS = ("layer_mean", "layer_std", "layer_frac_nonpos") + tuple(f"layer_q{round(q * 100):02d}" for q in QUANTILES)
CHANNEL_STATS = ("mean", "var")
RANGE_STATS = ("min", "max")
STATS = CHANNEL_STATS + RANGE_STATS + LAYER_STATS  # the vocabulary of the `stat` column


def sample_channels(widths: list[int], per_layer: int, seed: int) -> list[torch.Tensor]:
    """The sampled channel indices of every layer; depends only on the seed and the layer widths."""
    g = torch.Generator().manual_seed(seed * 1000 + 3)
    return [torch.randperm(w, generator=g)[: min(per_layer, w)] for w in widths]


class ActivationProbe:
    def __init__(self, model: nn.Module, cfg: ProbeConfig, seed: int, data=None):
        self.cfg = cfg
        self.layers = list(model.blocks)
        widths = [_out_features(b) for b in self.layers]
        self.channels = sample_channels(widths, cfg.channels_per_layer, seed)
        self.edges = torch.linspace(-cfg.hist_range, cfg.hist_range, cfg.hist_bins + 1, dtype=torch.float64)
        self._sample_gen = torch.Generator().manual_seed(seed * 1000 + 4)
        self._device_channels: list[torch.Tensor | None] = [None] * len(self.layers)
        self._sample_idx: list[torch.Tensor | None] = [None] * len(self.layers)
        self._quantile_at: list[tuple | None] = [None] * len(self.layers)
        self.active = False
        self.full_stats = False
        self.calls = 0  # hook invocations that recorded something (tests count them)
        self._current: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)  # this forward
        self._moments: list[torch.Tensor] = []  # per recorded step: (all sampled channels) x (mean, var)
        self.captured: torch.Tensor | None = None  # the step tensor a CUDA graph writes at each replay
        self._full: list[list[torch.Tensor]] = [[] for _ in self.layers]
        self._hists: list[list[torch.Tensor]] = [[] for _ in self.layers]
        self._steps: list[int] = []
        self._full_steps: list[int] = []
        self._channels_written = False
        self.handles = [self._point(b).register_forward_hook(self._hook(k)) for k, b in enumerate(self.layers)]
        self.fixed_batch = None
        if cfg.batch == "fixed":
            self.fixed_batch = _held_batch(data, 128, seed)
            self._noise_gen = None

    def _point(self, block: nn.Module) -> nn.Module:
        if not isinstance(block, Block):
            return block  # the output Linear: its output is the logits, at either point
        return block.norm if self.cfg.point == "pre_relu" else block.act

    # --- per step ------------------------------------------------------------------------------
    def wants_full_stats(self, step: int) -> bool:
        return step == 1 or step % self.cfg.every == 0

    @contextlib.contextmanager
    def observe(self, step: int):
        """Wrap the training forward of ``step``: hooks record during it (train-batch mode)."""
        self.full_stats = self.wants_full_stats(step)
        self.active = self.fixed_batch is None
        try:
            yield
        finally:
            self.active = False
        if self.fixed_batch is None:
            self._commit(step)

    @contextlib.contextmanager
    def capture(self):
        """Wrap the forward that a CUDA graph captures (or its warm-up): moments only, kept static."""
        self.full_stats, self.active = False, self.fixed_batch is None
        try:
            yield
        finally:
            self.active = False
        self.captured = self._stack_current() if self.fixed_batch is None else None

    def replayed(self, step: int) -> None:
        """After a replay of the captured step: keep a copy of what the graph wrote."""
        if self.captured is not None:
            self._moments.append(self.captured.clone())
            self._steps.append(step)

    def _stack_current(self) -> torch.Tensor:
        if any(c is None for c in self._current):  # a forward that never reached some hooks
            raise RuntimeError("activation probe: a layer's hook did not fire during the forward")
        means, variances = zip(*self._current)
        self._current = [None] * len(self.layers)
        return torch.stack([torch.cat(means), torch.cat(variances)], 1)

    def _commit(self, step: int) -> None:
        self._moments.append(self._stack_current())
        self._steps.append(step)
        if self.full_stats:
            self._full_steps.append(step)

    @torch.no_grad()
    def observe_fixed(self, model: nn.Module, step: int) -> None:
        """Fixed-batch mode, after the step's update: forward the held batch with probes on."""
        if self.fixed_batch is None:
            return
        noisy = [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]
        images = self.fixed_batch.to(next(model.parameters()).device)
        if noisy and self._noise_gen is None:
            self._noise_gen = torch.Generator(device=images.device).manual_seed(noisy[0].generator.initial_seed() + 7)
            if getattr(self, "_saved_noise", None) is not None:  # resumed from a checkpoint
                self._noise_gen.set_state(self._saved_noise)
        train_gens = [m.generator for m in noisy]
        self.full_stats = self.wants_full_stats(step)
        # Replay.isolated restores every buffer (BN and l_p running statistics) and the global RNGs
        with Replay(model, None).isolated():
            for m in noisy:
                m.generator = self._noise_gen
            self.active = True
            try:
                model(images)
            finally:
                self.active = False
                for m, g in zip(noisy, train_gens):
                    m.generator = g
        self._commit(step)

    def _hook(self, k: int):
        def hook(module, inputs, output):
            if self.active:
                self._record(k, output.detach())

        return hook

    def _record(self, k: int, x: torch.Tensor) -> None:
        if self._device_channels[k] is None:
            self._device_channels[k] = self.channels[k].to(x.device)
            n = min(self.cfg.summary_sample, x.numel())
            self._sample_idx[k] = torch.randperm(x.numel(), generator=self._sample_gen)[:n].to(x.device)
            self._quantile_at[k] = quantile_positions(n, QUANTILES, x.device, torch.float32)
        x = x.float()
        c = len(self.channels[k])
        chans = x.transpose(0, 1)[self._device_channels[k]].reshape(c, -1)  # c x (N*H*W), one gather
        if chans.is_cuda:  # one fused kernel; per-step launches are what a GPU step pays for
            var, mean = torch.var_mean(chans, dim=1, correction=0)
        else:  # var_mean is ~10x slower than two plain passes on CPU; two passes avoid E[x^2] - E[x]^2
            mean = chans.mean(1)
            var = (chans - mean[:, None]).square_().mean(1)
        self._current[k] = (mean, var)
        self.calls += 1
        if not self.full_stats:
            return
        self._hists[k].append(histogram(chans, self.cfg.hist_range, self.cfg.hist_bins))
        flat = x.reshape(-1)
        sample = flat[self._sample_idx[k]]
        qs = quantiles(sample, self._quantile_at[k])
        layer = torch.stack([flat.mean(), flat.std(), (flat <= 0).float().mean()])
        ranges = torch.stack([chans.amin(1), chans.amax(1)], 1).reshape(-1)
        self._full[k].append(torch.cat([layer, qs, ranges]))

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
        parts = [torch.stack(self._moments)]  # steps x (all sampled channels) x (mean, var)
        parts += [torch.stack(f) for f in self._full if f]
        parts += [torch.stack(h) for h in self._hists if h]
        tensor = torch.cat([p.reshape(-1).double() for p in parts])
        steps, full_steps = np.asarray(self._steps), np.asarray(self._full_steps)
        self._moments.clear()
        for lists in (self._full, self._hists):
            for lst in lists:
                lst.clear()
        self._steps, self._full_steps = [], []

        def write(host: np.ndarray) -> None:
            offset = 0

            def take(shape):
                nonlocal offset
                n = int(np.prod(shape))
                out = host[offset : offset + n].reshape(shape)
                offset += n
                return out

            all_moments = take((len(steps), sum(len(c) for c in self.channels), 2))
            bounds = np.cumsum([0] + [len(c) for c in self.channels])
            moments = [all_moments[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            full = [take((len(full_steps), len(LAYER_STATS) + 2 * len(c))) for c in self.channels] if len(full_steps) else []
            hists = [take((len(full_steps), len(c), self.cfg.hist_bins)) for c in self.channels] if len(full_steps) else []
            self._write(recorder, steps, full_steps, moments, full, hists)

        return tensor, write

    def _write(self, recorder, steps, full_steps, moments, full, hists) -> None:
        if not self._channels_written:
            layer = np.concatenate([np.full(len(c), k + 1) for k, c in enumerate(self.channels)])
            rank = np.concatenate([np.arange(len(c)) for c in self.channels])
            chan = np.concatenate([c.numpy() for c in self.channels])
            recorder.table("probe_channels", layer=layer.astype(np.int16), rank=rank.astype(np.int16), channel=chan.astype(np.int32))
            self._channels_written = True
        edges = self.edges.numpy().astype(np.float32)
        for k, chans in enumerate(self.channels):
            layer_no, c = k + 1, chans.numpy()
            m = moments[k]  # (S, C, 2)
            s_idx, c_idx, st_idx = np.meshgrid(np.arange(len(steps)), np.arange(len(c)), np.arange(2), indexing="ij")
            rows = {"step": steps[s_idx.ravel()], "channel": c[c_idx.ravel()],
                    "stat": st_idx.ravel(), "value": m.ravel()}
            self._activation_rows(recorder, layer_no, **rows)
            tb = (steps % self.cfg.tb_every == 0) | (steps == 1)  # TensorBoard gets every tb_every-th step
            recorder.tb_scalars(steps[tb], {
                f"moments/layer{layer_no:02d}_rank{r}/{stat}": m[tb, r, i]
                for r in range(min(self.cfg.tb_scalar_channels, len(c))) for i, stat in enumerate(CHANNEL_STATS)
            })
            if not len(full_steps):
                continue
            f = full[k]
            nl = len(LAYER_STATS)
            recorder.tb_scalars(full_steps, {f"layer_summary/layer{layer_no:02d}/{s[6:]}": f[:, i] for i, s in enumerate(LAYER_STATS)})
            S = len(full_steps)
            self._activation_rows(recorder, layer_no, step=np.repeat(full_steps, nl), channel=np.full(S * nl, -1),
                                  stat=np.tile(np.arange(nl) + len(CHANNEL_STATS + RANGE_STATS), S), value=f[:, :nl].ravel())
            ranges = f[:, nl:].reshape(S, len(c), 2)
            s_idx, c_idx, st_idx = np.meshgrid(np.arange(S), np.arange(len(c)), np.arange(2), indexing="ij")
            self._activation_rows(recorder, layer_no, step=full_steps[s_idx.ravel()], channel=c[c_idx.ravel()],
                                  stat=st_idx.ravel() + len(CHANNEL_STATS), value=ranges.ravel())
            h = hists[k].astype(np.int64)  # (S, C, bins)
            recorder.table("histograms", step=np.repeat(full_steps, len(c)).astype(np.int64),
                           layer=np.full(S * len(c), layer_no, dtype=np.int16), channel=np.tile(c, S).astype(np.int32),
                           bin_edges=[edges] * (S * len(c)), counts=list(h.reshape(S * len(c), -1)))
            for si, step in enumerate(full_steps.tolist()):
                for ci, ch in enumerate(c.tolist()):
                    recorder.histogram(f"activations/layer{layer_no:02d}/ch{ch:03d}", step, self.edges.numpy(), h[si, ci])

    @staticmethod
    def _activation_rows(recorder, layer_no, step, channel, stat, value) -> None:
        recorder.table("activations", step=np.asarray(step, dtype=np.int64),
                       layer=np.full(len(step), layer_no, dtype=np.int16), channel=np.asarray(channel, dtype=np.int32),
                       stat=labels(STATS, stat), value=np.asarray(value, dtype=np.float32))

    def tensorboard_layout(self) -> dict:
        """Custom scalars: per statistic, one chart per layer; every run (variant) is a line in it."""
        layout = {}
        for stat in CHANNEL_STATS:
            layout[f"sampled activation: {stat}"] = {
                f"layer #{k + 1}": ["Multiline", [f"moments/layer{k + 1:02d}_rank0/{stat}"]] for k in range(len(self.layers))
            }
        layout["whole layer: std"] = {
            f"layer #{k + 1}": ["Multiline", [f"layer_summary/layer{k + 1:02d}/std"]] for k in range(len(self.layers))
        }
        return layout

    def state_dict(self) -> dict:
        """What a checkpoint needs to continue exactly (everything else follows from the seed)."""
        noise = getattr(self, "_noise_gen", None)
        return {"channels_written": self._channels_written,
                "noise": noise.get_state() if noise is not None else torch.zeros(0, dtype=torch.uint8)}

    def load_state_dict(self, state: dict) -> None:
        self._channels_written = bool(state["channels_written"])
        self._saved_noise = state["noise"] if len(state["noise"]) else None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _out_features(block: nn.Module) -> int:
    layer = block.layer if isinstance(block, Block) else block
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _held_batch(data, batch_size: int, seed: int) -> torch.Tensor:
    """A fixed training batch (normalised), drawn from the probe's own generator."""
    g = torch.Generator().manual_seed(seed * 1000 + 5)
    idx = torch.randperm(len(data.y_train), generator=g)[:batch_size].to(data.x_train.device)
    return data.normalize(data.x_train[idx])
