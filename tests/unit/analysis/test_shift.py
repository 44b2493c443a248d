"""The Wasserstein-1 stability statistic on hand-made distributions, fixed before any run was
looked at: a shift, a rescaling, a change of shape with the same moments, and a fixed distribution
under sampling noise (what a channel's batch-to-batch variation looks like to it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ics_study.analysis.shift import unit_shift, wasserstein1

BINS = 64  # probe.hist_bins' default order of magnitude


def hist(values: np.ndarray, bins: int = BINS):
    """A histogram as the probe records it: equal bins on the values' own range."""
    edges = np.linspace(values.min(), values.max(), bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts


def test_two_hand_computed_cases():
    # uniform on [0, 1] against uniform on [1, 2]: every unit of mass moves by 1
    assert wasserstein1([0, 1], [5], [1, 2], [7]) == pytest.approx(1.0)
    # uniform on [0, 1] against a point mass at 0: E|U - 0| = 1/2
    assert wasserstein1([0, 1], [4], [0, 0], [3]) == pytest.approx(0.5)
    # uniform on [0, 2] in two bins against a point mass at 1: E|U - 1| = 1/2
    assert wasserstein1([0, 1, 2], [1, 1], [1, 1], [2]) == pytest.approx(0.5)
    # crossing CDFs: uniform on [0, 2] against uniform on [0.5, 1.5]: 2 triangles of area 1/8 each
    assert wasserstein1([0, 2], [1], [0.5, 1.5], [1]) == pytest.approx(0.25)
    assert wasserstein1([0, 1], [3], [0, 1], [9]) == 0.0  # the same distribution, other counts


def test_a_shift_a_rescaling_and_a_change_of_shape_with_the_same_moments():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200_000)
    assert wasserstein1(*hist(x), *hist(x + 0.3)) == pytest.approx(0.3, rel=0.02)
    # a rescaling by s: W1 = |s - 1| E|X| = 0.5 sqrt(2 / pi)
    assert wasserstein1(*hist(x), *hist(1.5 * x)) == pytest.approx(0.5 * np.sqrt(2 / np.pi), rel=0.02)
    # same mean 0 and variance 1, another shape: the moments do not move, W1 does
    u = rng.uniform(-np.sqrt(3), np.sqrt(3), 200_000)
    assert abs(u.mean()) < 0.01 and abs(u.var() - 1) < 0.01
    w = wasserstein1(*hist(x), *hist(u))
    assert w > 0.05  # about 0.085 for N(0, 1) against this uniform
    assert wasserstein1(*hist(u), *hist(x)) == pytest.approx(w)  # symmetric


def test_sampling_noise_alone_is_far_below_a_real_shift():
    """A fixed distribution sampled twice, as a channel's N*H*W values (128 x 4 x 4 = 2,048 at a deep
    layer, the fewest in VGG-16 at width 1/4): W1 stays near its 1/sqrt(n) floor, 10x below a shift
    of a tenth of a standard deviation."""
    rng = np.random.default_rng(1)
    noise = [wasserstein1(*hist(rng.standard_normal(2048)), *hist(rng.standard_normal(2048))) for _ in range(20)]
    assert np.mean(noise) < 0.05
    shifted = [wasserstein1(*hist(rng.standard_normal(2048)), *hist(rng.standard_normal(2048) + 1.0)) for _ in range(20)]
    assert np.mean(shifted) > 10 * np.mean(noise)


def test_unit_shift_scales_by_one_fixed_spread():
    """A unit whose distribution doubles in width each record while staying centred: its moment drift
    (|mu(t+1) - mu(t)| / sigma(t)) is ~0, its W1 shift is not; dividing by the mean spread keeps a
    widening counted as movement."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(50_000)
    scales = [1.0, 2.0, 4.0]
    rows = [{"step": 1 + 100 * i, "bin_edges": hist(s * x)[0], "counts": hist(s * x)[1]} for i, s in enumerate(scales)]
    lag, start = unit_shift(pd.DataFrame(rows), pd.Series([s**2 for s in scales]))
    mean_abs = np.sqrt(2 / np.pi)
    spread = np.mean(scales)
    assert lag == pytest.approx(np.mean([1.0 * mean_abs, 2.0 * mean_abs]) / spread, rel=0.03)
    assert start == pytest.approx(np.mean([1.0 * mean_abs, 3.0 * mean_abs]) / spread, rel=0.03)
    steady = [{"step": 1 + 100 * i, "bin_edges": hist(x)[0], "counts": hist(x)[1]} for i in range(3)]
    assert unit_shift(pd.DataFrame(steady), pd.Series([1.0] * 3)) == (0.0, 0.0)
    assert np.isnan(unit_shift(pd.DataFrame(steady[:1]), pd.Series([1.0]))[0])  # one record: no pair
    diverged = steady[:2] + [{"step": 301, "bin_edges": np.zeros(BINS + 1), "counts": np.zeros(BINS, int)}]
    assert unit_shift(pd.DataFrame(diverged), pd.Series([1.0, 1.0, np.nan])) == (0.0, 0.0)  # the empty one skipped
