"""The probes' statistics on hand-made tensors: the quantiles' sample positions and the per-unit histograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ics_study.probes.statistics import histogram, sample_positions


@pytest.mark.parametrize("n, k", [(10, 4), (100, 100), (400, 100), (401, 100), (8_388_608, 4096)])
def test_quantile_sample_positions_are_distinct_in_range_and_seeded(n, k):
    a = sample_positions(n, k, torch.Generator().manual_seed(5))
    assert len(a) == min(k, n) and len(a.unique()) == len(a)
    assert a.min() >= 0 and a.max() < n
    assert torch.equal(a, sample_positions(n, k, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, sample_positions(n, k, torch.Generator().manual_seed(6)))


def test_quantile_sample_positions_are_uniform():
    """Every position is drawn with probability k/n (the O(k) path: n > 4k)."""
    n, k, draws = 1000, 100, 4000
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(n)
    for _ in range(draws):
        counts[sample_positions(n, k, g)] += 1
    expected = draws * k / n  # 400, binomial sd ~19
    chi2 = ((counts - expected) ** 2 / (expected * (1 - k / n))).sum().item()
    assert abs(chi2 - (n - 1)) < 6 * (2 * (n - 1)) ** 0.5  # chi-square with n-1 dof: mean n-1, sd sqrt(2(n-1))
    assert counts.min() > expected - 6 * 19 and counts.max() < expected + 6 * 19


def split(h: torch.Tensor, bins: int):
    return h[:, :bins].long(), h[:, bins].long(), h[:, bins + 1 :]


def test_histogram_of_a_hand_made_tensor_is_exact():
    x = torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0, 2.9, 3.0, 0.1]])  # range [0, 3], 4 bins of 0.75
    counts, nonfinite, edges = split(histogram(x, 4), 4)
    assert edges.tolist() == [[0.0, 0.75, 1.5, 2.25, 3.0]]
    assert counts.tolist() == [[3, 1, 2, 2]]  # [0, .75): 0, .1, .5; [.75, 1.5): 1; [1.5, 2.25): 1.5, 2; [2.25, 3]: 2.9, 3
    assert nonfinite.tolist() == [0]


def test_histogram_degenerate_rows():
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([
        [5.0, 5.0, 5.0, 5.0],  # a constant unit: zero range
        [nan, inf, -inf, 1.0],  # non-finite values are counted apart, the edges come from the finite ones
        [nan, nan, nan, nan],  # nothing finite (a diverged run)
        [3e38, -3e38, 0.0, 1.0],  # near the float32 limit: hi - lo would overflow
        [1e-30, 2e-30, 3e-30, 4e-30],  # tiny but not constant: still resolved
    ])
    counts, nonfinite, edges = split(histogram(x, 8), 8)
    assert ((counts.sum(1) + nonfinite) == 4).all()  # every value accounted for
    assert torch.isfinite(edges).all() and (edges.diff(dim=1) >= 0).all()
    assert counts[0].tolist() == [0, 0, 0, 0, 4, 0, 0, 0] and edges[0, 0] < 5 < edges[0, -1]
    assert nonfinite.tolist() == [0, 3, 4, 0, 0]
    assert counts[1].sum() == 1 and counts[2].sum() == 0
    assert edges[3, 0].item() == pytest.approx(-3e38) and edges[3, -1].item() == pytest.approx(3e38)
    assert counts[3].tolist() == [1, 0, 0, 0, 2, 0, 0, 1]
    assert (counts[4] > 0).sum() == 4 and edges[4, 0].item() == pytest.approx(1e-30)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_histogram_resolves_any_scale(scale):
    """The old fixed [-8, 8] bins put a unit of std 0.003 in one bin; its own range resolves it."""
    x = torch.randn(3, 20_000, generator=torch.Generator().manual_seed(0)) * scale
    counts, nonfinite, edges = split(histogram(x, 64), 64)
    assert ((counts > 0).sum(1) >= 40).all() and (counts.max(1).values < 0.1 * 20_000).all()
    want = np.stack([np.histogram(r.numpy(), bins=e.numpy())[0] for r, e in zip(x.double(), edges)])
    assert (np.abs(want - counts.numpy()).sum(1) <= 2).all()  # equal but for float32 rounding at an edge
