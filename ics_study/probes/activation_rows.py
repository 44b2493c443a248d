"""The activation probe's records: their layout on the device, and their rows in the ``activations``,
``histograms`` and ``probe_channels`` tables and TensorBoard events (schema: docs/outputs.md).

The layout, both ways, lives here only. A step's record (``stack``) is the moments of every sampled
channel of every site, (C, 2) = (mean, var); on histogram/summary steps also each site's
``full_record`` (LAYER_STATS, then each channel's min and max) and each channel's histogram row
(``statistics.histogram``: counts, non-finite count, edges). A flush packs the pending records into
one float64 tensor (``pack``; counts < 2**53 stay exact) and ``write`` unpacks what arrived on the
host into one append per table for all layers (per-layer appends cost ~0.7 ms of host time per
step; a GPU step is ~4.6 ms), plus one TensorBoard event per step.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from ..columns import labels
from ..config import ProbeConfig

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
LAYER_STATS = ("layer_mean", "layer_std", "layer_frac_nonpos") + tuple(f"layer_q{round(q * 100):02d}" for q in QUANTILES)
CHANNEL_STATS = ("mean", "var")
RANGE_STATS = ("min", "max")
STATS = CHANNEL_STATS + RANGE_STATS + LAYER_STATS  # the vocabulary of the `stat` column


def full_record(layer: torch.Tensor, quantiles: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """One site's record on a full step: (mean, std, fraction <= 0), the quantiles (LAYER_STATS), then
    each sampled channel's (min, max) from ``ranges`` (c, 2)."""
    return torch.cat([layer, quantiles, ranges.reshape(-1)])


def tag_prefix(point: str, cfg: ProbeConfig) -> str:
    """TensorBoard tags of the run's first point have no prefix; every other point's start with it."""
    return "" if point == cfg.points[0] else f"{point}/"


class ActivationRows:
    def __init__(self, sites: list[tuple[str, int]], layer_channels: list[torch.Tensor], cfg: ProbeConfig,
                 positions: list | None = None, tensorboard_rows=None):
        self.sites, self.cfg = sites, cfg  # (point, layer index) of each site, in the probe's record order
        self.layer_channels = layer_channels  # sampled channels of each layer (the same at every point)
        self.positions = positions or [None] * len(layer_channels)  # per layer (h, w) with probe.unit=position
        self.channels = [layer_channels[k] for _, k in sites]  # ... of each site
        self.channels_written = False  # the probe_channels table is written once per run
        self.tensorboard_rows = tensorboard_rows  # steps -> which become TensorBoard points; None: all
        # per sampled channel of every site, in the probe's record order (fixed for the run)
        self.layer_of = np.concatenate([np.full(len(c), k + 1) for (_, k), c in zip(sites, self.channels)]).astype(np.int16)
        self.chan_of = np.concatenate([c.numpy() for c in self.channels]).astype(np.int32)
        self.point_of = np.concatenate([np.full(len(c), cfg.points.index(p)) for (p, _), c in
                                        zip(sites, self.channels)]).astype(np.int32)  # codes into cfg.points

    # --- the layout on the device ------------------------------------------------------------------
    @property
    def full_sizes(self) -> list[int]:
        """The length of each site's ``full_record``."""
        return [len(LAYER_STATS) + 2 * len(c) for c in self.channels]

    def stack(self, moments: list, full: list | None) -> tuple:
        """One step's record from each site's (mean, var) and, on a full step, its (full_record,
        histogram rows): (moments (C, 2), full or None, histograms or None)."""
        means, variances = zip(*moments)
        record = torch.stack([torch.cat(means), torch.cat(variances)], 1)
        if full is None:
            return record, None, None
        stats, hists = zip(*full)
        return record, torch.cat(stats), torch.cat(hists)

    @staticmethod
    def pack(moments: list, full: list, hists: list) -> torch.Tensor:
        """Pending records (per recorded step; per full step) as one flat float64 device tensor."""
        parts = [torch.stack(records) for records in (moments, full, hists) if records]
        return torch.cat([p.reshape(-1).double() for p in parts])

    def unpack(self, host: np.ndarray, steps: int, full_steps: int) -> tuple:
        """``pack``'s inverse on the host: (moments (S, C, 2), full per site (F, size) or None,
        histograms (F, C, 2 * bins + 2) or None)."""
        sizes, bins = self.full_sizes, self.cfg.hist_bins
        shapes = [(steps, len(self.chan_of), 2)]
        if full_steps:
            shapes += [(full_steps, sum(sizes)), (full_steps, len(self.chan_of), 2 * bins + 2)]
        ends = np.cumsum([int(np.prod(s)) for s in shapes])
        if len(host) != ends[-1]:
            raise RuntimeError(f"activation probe: {len(host)} values read back where the layout has {ends[-1]}")
        moments, *rest = (host[end - int(np.prod(s)) : end].reshape(s) for s, end in zip(shapes, ends))
        if not rest:
            return moments, None, None
        return moments, np.split(rest[0], np.cumsum(sizes)[:-1], axis=1), rest[1]

    # --- rows ---------------------------------------------------------------------------------------
    def write(self, recorder, steps: np.ndarray, full_steps: np.ndarray, host: np.ndarray) -> None:
        """One flush's records, as ``pack`` laid them out and the host received them, into the
        tables and TensorBoard."""
        moments, full, hists = self.unpack(host, len(steps), len(full_steps))
        layer_of, chan_of, point_code = self.layer_of, self.chan_of, self.point_of
        if not self.channels_written:
            rank = np.concatenate([np.arange(len(c)) for c in self.layer_channels]).astype(np.int16)
            h, w = (np.concatenate([(p[i].numpy() if p is not None else np.full(len(c), -1))
                                    for p, c in zip(self.positions, self.layer_channels)]).astype(np.int16) for i in (0, 1))
            recorder.table("probe_channels", layer=np.concatenate([np.full(len(c), k + 1) for k, c in
                                                                   enumerate(self.layer_channels)]).astype(np.int16),
                           rank=rank, channel=np.concatenate([c.numpy() for c in self.layer_channels]).astype(np.int32),
                           h=h, w=w)
            self.channels_written = True
        site_layer = np.array([k + 1 for _, k in self.sites], dtype=np.int16)
        site_point = np.array([self.cfg.points.index(p) for p, _ in self.sites], dtype=np.int32)
        prefix = [tag_prefix(p, self.cfg) for p, _ in self.sites]
        S, C = moments.shape[:2]
        blocks = [(np.repeat(steps, 2 * C), np.tile(np.repeat(point_code, 2), S), np.tile(np.repeat(layer_of, 2), S),
                   np.tile(np.repeat(chan_of, 2), S), np.tile(np.arange(2), S * C),
                   moments.ravel())]  # mean and var of every channel, every step
        first = np.cumsum([0] + [len(c) for c in self.channels])[:-1]  # each site's rank 0 in the channel axis
        tb = self.tensorboard_rows(steps) if self.tensorboard_rows is not None else np.ones(len(steps), bool)
        recorder.tb_scalars(steps[tb], {
            f"{prefix[s]}moments/layer{k + 1:02d}_rank{r}/{stat}": moments[tb, first[s] + r, i]
            for s, ((_, k), c) in enumerate(zip(self.sites, self.channels))
            for r in range(min(self.cfg.tb_scalar_channels, len(c))) for i, stat in enumerate(CHANNEL_STATS)})
        if len(full_steps):
            F, L, nl = len(full_steps), len(self.sites), len(LAYER_STATS)
            summary = np.stack([f[:, :nl] for f in full], 1)  # (F, sites, nl)
            ranges = np.concatenate([f[:, nl:].reshape(F, -1, 2) for f in full], 1)  # (F, C, 2)
            blocks.append((np.repeat(full_steps, L * nl), np.tile(np.repeat(site_point, nl), F),
                           np.tile(np.repeat(site_layer, nl), F), np.full(F * L * nl, -1),
                           np.tile(np.arange(nl), F * L) + len(CHANNEL_STATS + RANGE_STATS), summary.ravel()))
            blocks.append((np.repeat(full_steps, 2 * C), np.tile(np.repeat(point_code, 2), F),
                           np.tile(np.repeat(layer_of, 2), F), np.tile(np.repeat(chan_of, 2), F),
                           np.tile(np.arange(2), F * C) + len(CHANNEL_STATS), ranges.ravel()))
            recorder.tb_scalars(full_steps, {f"{prefix[s]}layer_summary/layer{k + 1:02d}/{name[6:]}": summary[:, s, i]
                                             for s, (_, k) in enumerate(self.sites) for i, name in enumerate(LAYER_STATS)})
            self._histogram_rows(recorder, full_steps, point_code, layer_of, chan_of, hists)
        self._activation_rows(recorder, *(np.concatenate(column) for column in zip(*blocks)))

    def _histogram_rows(self, recorder, full_steps, point_code, layer_of, chan_of, hists) -> None:
        """``hists`` (F, C, 2 * bins + 2): per channel its counts, non-finite count and edges."""
        F, C, bins = hists.shape[0], hists.shape[1], self.cfg.hist_bins
        counts = hists[:, :, :bins].astype(np.int64)
        nonfinite = hists[:, :, bins].astype(np.int64)
        edges = hists[:, :, bins + 1 :]  # float32 values, exactly as the device binned with them
        offsets = np.arange(F * C + 1, dtype=np.int32)
        recorder.table("histograms", step=np.repeat(full_steps, C).astype(np.int64),
                       point=labels(self.cfg.points, np.tile(point_code, F)), layer=np.tile(layer_of, F),
                       channel=np.tile(chan_of, F),
                       bin_edges=pa.ListArray.from_arrays(pa.array(offsets * (bins + 1)),
                                                          pa.array(edges.astype(np.float32).ravel())),
                       counts=pa.ListArray.from_arrays(pa.array(offsets * bins), pa.array(counts.ravel())),
                       nonfinite=nonfinite.ravel())
        tags = [f"{tag_prefix(self.cfg.points[p], self.cfg)}activations/layer{layer:02d}/ch{chan:03d}"
                for p, layer, chan in zip(point_code, layer_of, chan_of)]
        for si, step in enumerate(full_steps.tolist()):
            recorder.histograms(step, tags, edges[si], counts[si])

    def _activation_rows(self, recorder, step, point, layer, channel, stat, value) -> None:
        recorder.table("activations", step=np.asarray(step, dtype=np.int64), point=labels(self.cfg.points, point),
                       layer=np.asarray(layer, dtype=np.int16), channel=np.asarray(channel, dtype=np.int32),
                       stat=labels(STATS, stat), value=np.asarray(value, dtype=np.float32))

    def tensorboard_layout(self) -> dict:
        """Custom scalars: per point and statistic, one chart per layer; every run (variant) is a line
        in it. The first point's sections keep their plain names."""
        layout, layers = {}, range(1, len(self.layer_channels) + 1)
        for point in self.cfg.points:
            pre, at = tag_prefix(point, self.cfg), "" if point == self.cfg.points[0] else f" at {point}"
            for stat in CHANNEL_STATS:
                layout[f"sampled activation{at}: {stat}"] = {
                    f"layer #{k}": ["Multiline", [f"{pre}moments/layer{k:02d}_rank0/{stat}"]] for k in layers}
            layout[f"whole layer{at}: std"] = {
                f"layer #{k}": ["Multiline", [f"{pre}layer_summary/layer{k:02d}/std"]] for k in layers}
        return layout
