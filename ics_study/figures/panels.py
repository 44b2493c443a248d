"""Panels shared by the figures: seed-aggregated lines and bands, and ridge plots of histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.patches import Polygon

from .style import LR_STYLES, color, label


def seed_lines(ax, df: pd.DataFrame, lrs: list[float] | None = None, smooth: int = 1, value: str = "value",
               show_lr: bool = True) -> int:
    """One line per (variant, lr): the mean over seeds, with a min-max band when there are several.

    ``df`` has columns variant, lr, seed, step and ``value``. ``smooth`` > 1 applies a centred rolling
    mean over that many steps to each seed first. Returns the number of lines drawn."""
    if df.empty:
        return 0
    lrs = sorted(df.lr.unique()) if lrs is None else lrs
    drawn = 0
    for (variant, lr), g in df.groupby(["variant", "lr"], sort=True):
        wide = g.pivot_table(index="step", columns="seed", values=value)
        if smooth > 1:
            wide = wide.rolling(smooth, center=True, min_periods=1).mean()
        mean = wide.mean(axis=1)
        style = LR_STYLES[lrs.index(lr) % len(LR_STYLES)] if lr in lrs else "-"
        name = label(variant) + (f", lr {lr:g}" if show_lr and len(lrs) > 1 else "")
        if wide.shape[1] > 1:
            name += f" ({wide.shape[1]} seeds)"
            ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=color(variant), alpha=0.2, lw=0)
        ax.plot(mean.index, mean.values, style, color=color(variant), label=name)
        drawn += 1
    return drawn


def seed_band(ax, lo: pd.DataFrame, hi: pd.DataFrame, alpha: float = 0.35) -> int:
    """A band between two per-step metrics (e.g. loss_min and loss_max), seeds averaged, per variant."""
    drawn = 0
    for variant, g_lo in lo.groupby("variant", sort=True):
        g_hi = hi[hi.variant == variant]
        low = g_lo.groupby("step").value.mean()
        high = g_hi.groupby("step").value.mean()
        ax.fill_between(low.index, low.values, high.reindex(low.index).values, color=color(variant), alpha=alpha,
                        lw=0.5, label=label(variant))
        drawn += 1
    return drawn


def ridge(ax, hist: pd.DataFrame, variant: str, max_curves: int = 16, overlap: float = 2.5) -> int:
    """Stacked histograms over training (TensorBoard's offset view): later steps further up and behind."""
    steps = hist.step.to_numpy()
    if len(steps) == 0:
        return 0
    keep = np.unique(np.linspace(0, len(steps) - 1, min(max_curves, len(steps))).round().astype(int))
    rows = hist.iloc[keep]
    edges = np.asarray(rows.iloc[0].bin_edges, dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    dens = np.stack([np.asarray(c, float) / max(np.sum(c), 1) for c in rows.counts])
    dens = dens / dens.max()
    n = len(rows)
    for i in range(n - 1, -1, -1):  # latest first, so earlier curves are drawn in front
        base = i * (1.0 / overlap)
        y = base + dens[i]
        poly = Polygon(np.column_stack([np.r_[centres[0], centres, centres[-1]], np.r_[base, y, base]]),
                       closed=True, facecolor=color(variant), edgecolor="white", lw=0.4, alpha=0.9, zorder=n - i)
        ax.add_patch(poly)
    nz = np.nonzero(dens.sum(0))[0]
    lo, hi = (centres[nz[0]], centres[nz[-1]]) if len(nz) else (edges[0], edges[-1])
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(0, (n - 1) / overlap + 1.1)
    ticks = [0, n - 1]
    ax.set_yticks([t / overlap for t in ticks], [f"step {int(rows.step.iloc[t])}" for t in ticks])
    return n
