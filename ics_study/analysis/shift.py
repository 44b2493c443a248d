"""How far a unit's whole distribution moves: the Wasserstein-1 distance between its recorded
histograms, the stability statistic of Figure 1c and the l_p figures.

A histogram (``probe.every`` steps apart, on the unit's own range at that step) is read as a
piecewise-uniform density: its CDF is linear inside each bin. For two of them

    W1(P, Q) = integral |F_P(x) - F_Q(x)| dx,

computed exactly on the union of both sets of edges (both CDFs are linear between them; where their
difference changes sign inside a segment, the two triangles are integrated apart). W1 sees a shift
(W1 = the shift), a rescaling (W1 = |s - 1| E|X - median| for a symmetric unit) and a change of shape
with the same mean and variance, which the moment drift misses.

Per run (``unit_shift``): for every sampled unit of the drift layers, W1 between consecutive
recorded histograms (lag ``probe.every`` steps; long enough that the batch-to-batch sampling noise of
a channel's N*H*W values is small against a real shift, which ``tests/unit/analysis/test_shift.py`` measures) and
between each histogram and the first (step 1), each divided by one fixed spread of the unit: the
mean over the recorded steps of its standard deviation [I] (not sigma(t): a distribution that widens
must count as moving), averaged over units and pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cdf_at(edges: np.ndarray, counts: np.ndarray, x: np.ndarray, side: str = "right") -> np.ndarray:
    """The piecewise-linear CDF of a histogram at ``x`` (0 below its first edge, 1 above its last).
    A histogram whose edges are all equal (every value the same) is a step: ``side`` picks its limit
    from the right (F(x+), as a CDF is) or from the left (F(x-))."""
    cum = np.concatenate([[0.0], np.cumsum(counts, dtype=float)])
    if cum[-1] <= 0:
        raise ValueError("an empty histogram has no distribution")
    if edges[-1] <= edges[0]:
        return (x >= edges[0] if side == "right" else x > edges[0]).astype(float)
    return np.interp(x, edges, cum / cum[-1], left=0.0, right=1.0)


def wasserstein1(edges_p, counts_p, edges_q, counts_q) -> float:
    """W1 between two histograms, each uniform within its bins; exact for that reading."""
    p = np.asarray(edges_p, float), np.asarray(counts_p, float)
    q = np.asarray(edges_q, float), np.asarray(counts_q, float)
    grid = np.unique(np.concatenate([p[0], q[0]]))
    if len(grid) < 2:
        return 0.0
    # on each segment between neighbouring grid points both CDFs are linear (or constant)
    d0 = cdf_at(*p, grid[:-1], "right") - cdf_at(*q, grid[:-1], "right")
    d1 = cdf_at(*p, grid[1:], "left") - cdf_at(*q, grid[1:], "left")
    h = np.diff(grid)
    same = d0 * d1 >= 0
    area = np.where(same, 0.5 * (np.abs(d0) + np.abs(d1)) * h,
                    0.5 * (d0**2 + d1**2) / np.maximum(np.abs(d0) + np.abs(d1), 1e-300) * h)
    return float(area.sum())


def unit_shift(hists: pd.DataFrame, variances: pd.Series) -> tuple[float, float]:
    """(mean W1 between consecutive histograms, mean W1 from the first one), both over the unit's
    fixed spread, for one unit: ``hists`` its histogram rows (step, bin_edges, counts) and
    ``variances`` its per-step variance (any steps)."""
    h = hists.sort_values("step")
    h = h[h.counts.map(np.sum) > 0] if len(h) else h  # a step with no finite value (a diverged run) has no shape
    spread = float(np.nanmean(np.sqrt(np.asarray(variances, float)))) if len(variances) else np.nan
    if len(h) < 2 or not spread > 0:
        return np.nan, np.nan
    e = [np.asarray(x, float) for x in h.bin_edges]
    c = [np.asarray(x, float) for x in h.counts]
    lag = [wasserstein1(e[i], c[i], e[i + 1], c[i + 1]) for i in range(len(e) - 1)]
    start = [wasserstein1(e[0], c[0], e[i], c[i]) for i in range(1, len(e))]
    return float(np.mean(lag)) / spread, float(np.mean(start)) / spread
