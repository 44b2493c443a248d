"""Panels shared by the figures: seed-aggregated lines and bands, and ridge plots of histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Polygon

from .style import LR_STYLES, color, label


def _apart(g: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs that finished, diverged runs): a diverged run is never averaged with the others."""
    diverged = g.status == "diverged" if "status" in g else pd.Series(False, index=g.index)
    return g[~diverged], g[diverged]


def _diverged_lines(ax, bad: pd.DataFrame, variant: str, value: str, name: str) -> None:
    """Each diverged run on its own: a thin dotted line up to its last finite value, an x there."""
    for i, (_, run) in enumerate(bad.groupby("run", sort=True)):
        run = run[np.isfinite(run[value].astype(float))].sort_values("step")
        if run.empty:
            continue
        ax.plot(run.step, run[value], ":", lw=0.7, color=color(variant), label=f"{name}, diverged" if i == 0 else None)
        ax.plot(run.step.iloc[-1], run[value].iloc[-1], "x", ms=4, color=color(variant))


def seed_lines(ax, df: pd.DataFrame, lrs: list[float] | None = None, smooth: int = 1, value: str = "value",
               show_lr: bool = True) -> int:
    """One line per (variant, lr): the mean over the seeds that did not diverge, with a min-max band
    when there are several; runs that diverged are drawn apart, each marked as diverged. Never
    averages across learning rates.

    ``df`` has columns variant, lr, seed, step and ``value`` (and run, status). ``smooth`` > 1 applies
    a centred rolling mean over that many steps to each seed first. Returns the number of lines drawn."""
    if df.empty:
        return 0
    lrs = sorted(df.lr.unique()) if lrs is None else lrs
    drawn = 0
    for (variant, lr), g in df.groupby(["variant", "lr"], sort=True):
        good, bad = _apart(g)
        style = LR_STYLES[lrs.index(lr) % len(LR_STYLES)] if lr in lrs else "-"
        name = label(variant) + (f", lr {lr:g}" if show_lr and len(lrs) > 1 else "")
        if len(bad):
            n_bad = bad.seed.nunique()
            _diverged_lines(ax, bad, variant, value, f"{name} ({n_bad} run{'s' * (n_bad > 1)})")
            drawn += 1
        if good.empty:
            continue
        wide = good.pivot_table(index="step", columns="seed", values=value)
        if smooth > 1:
            wide = wide.rolling(smooth, center=True, min_periods=1).mean()
        mean = wide.mean(axis=1)
        if wide.shape[1] > 1:
            name += f" ({wide.shape[1]} seeds)"
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color(variant), alpha=0.2, lw=0,
                            rasterized=True)  # thousands of vertices per band: a PDF stays small
        ax.plot(mean.index, mean.values, style, color=color(variant), label=name)
        drawn += 1
    return drawn


def seed_band(ax, lo: pd.DataFrame, hi: pd.DataFrame, alpha: float = 0.35, show_lr: bool = True) -> int:
    """A band between two per-step metrics (e.g. loss_min and loss_max), seeds averaged, per variant
    and learning rate (never across them); diverged runs are left out of the band and drawn apart
    (their midpoint, dotted, marked as diverged)."""
    drawn = 0
    lrs = sorted(lo.lr.unique()) if len(lo) else []
    for (variant, lr), g_lo in lo.groupby(["variant", "lr"], sort=True):
        g_hi = hi[(hi.variant == variant) & (hi.lr == lr)]
        name = label(variant) + (f", lr {lr:g}" if show_lr and len(lrs) > 1 else "")
        good_lo, bad_lo = _apart(g_lo)
        good_hi, _ = _apart(g_hi)
        if len(bad_lo):
            mid = bad_lo.merge(g_hi[["run", "step", "value"]], on=["run", "step"], suffixes=("", "_hi"))
            mid = mid.assign(value=np.sqrt(mid.value.clip(lower=1e-300) * mid.value_hi.clip(lower=1e-300)))
            _diverged_lines(ax, mid, variant, "value", name)
            drawn += 1
        if good_lo.empty:
            continue
        low = good_lo.groupby("step").value.mean()
        high = good_hi.groupby("step").value.mean()
        n = good_lo.seed.nunique()
        ax.fill_between(low.index, low.values, high.reindex(low.index).values, color=color(variant), alpha=alpha,
                        lw=0.5, label=name + (f" ({n} seeds)" if n > 1 else ""))
        drawn += 1
    return drawn


def rebin(edges: np.ndarray, counts: np.ndarray, target: np.ndarray, keep_tails: bool = True) -> np.ndarray:
    """Counts on ``edges`` moved onto the ``target`` edges, each bin's count spread uniformly over
    its width (the cumulative count interpolated at the target edges); mass beyond the target's ends
    goes to its end bins (so the total is kept), or is dropped if not ``keep_tails``."""
    cum = np.concatenate([[0.0], np.cumsum(counts, dtype=float)])
    at = np.interp(np.clip(target, edges[0], edges[-1]), edges, cum)
    out = np.diff(at)
    if keep_tails:
        out[0] += at[0]
        out[-1] += cum[-1] - at[-1]
    return out


def common_axis(hist: pd.DataFrame, bins: int = 96, tail: float = 1e-3) -> np.ndarray:
    """Edges of one value axis for every histogram of ``hist``: from the ``tail`` to the 1 - ``tail``
    quantile of all their values pooled (a lone outlier does not squash the rest)."""
    pooled_edges = np.unique(np.concatenate([np.asarray(e, float) for e in hist.bin_edges]))
    pooled = np.sum([rebin(np.asarray(e, float), np.asarray(c, float), pooled_edges)
                     for e, c in zip(hist.bin_edges, hist.counts)], axis=0)
    cum = np.concatenate([[0.0], np.cumsum(pooled)]) / max(pooled.sum(), 1)
    lo, hi = np.interp([tail, 1 - tail], cum, pooled_edges)
    if not hi > lo:
        lo, hi = pooled_edges[0], pooled_edges[-1]
    return np.linspace(lo, hi, bins + 1)


def ridge(ax, hist: pd.DataFrame, variant: str, max_curves: int = 16, overlap: float = 2.5) -> int:
    """Stacked histograms over training (TensorBoard's offset view): later steps further up and behind.

    Each recorded histogram has its own edges (the unit's range at that step); here all the drawn
    steps are re-binned onto one common value axis, so that a distribution widening, narrowing or
    moving over training shows as such. Each curve is scaled to its own peak: shapes, not heights."""
    steps = hist.step.to_numpy()
    if len(steps) == 0:
        return 0
    keep = np.unique(np.linspace(0, len(steps) - 1, min(max_curves, len(steps))).round().astype(int))
    rows = hist.iloc[keep]
    edges = common_axis(rows)
    centres = 0.5 * (edges[:-1] + edges[1:])
    # the 0.2% of values beyond the common axis are not drawn (piled into the end bins they looked like spikes)
    dens = np.stack([rebin(np.asarray(e, float), np.asarray(c, float), edges, keep_tails=False)
                     for e, c in zip(rows.bin_edges, rows.counts)])
    dens = dens / np.maximum(dens.max(1, keepdims=True), 1)
    n = len(rows)
    for i in range(n - 1, -1, -1):  # latest first, so earlier curves are drawn in front
        base = i * (1.0 / overlap)
        y = base + dens[i]
        poly = Polygon(np.column_stack([np.r_[centres[0], centres, centres[-1]], np.r_[base, y, base]]),
                       closed=True, facecolor=color(variant), edgecolor="white", lw=0.4, alpha=0.9, zorder=n - i)
        ax.add_patch(poly)
    pad = 0.03 * (edges[-1] - edges[0])
    ax.set_xlim(edges[0] - pad, edges[-1] + pad)
    ax.set_ylim(0, (n - 1) / overlap + 1.1)
    ticks = [0, n - 1]
    ax.set_yticks([t / overlap for t in ticks], [f"step {int(rows.step.iloc[t])}" for t in ticks])
    return n
