"""Statistics the activation probes take on the device, without a host sync."""

from __future__ import annotations

import torch


def quantile_positions(n: int, qs: tuple[float, ...], device: torch.device, dtype: torch.dtype):
    """Where torch.quantile's linear interpolation reads a sorted vector of length n. Made once per
    layer: building them is a host-to-device copy, and an unpinned one waits for the device."""
    pos = [q * (n - 1) for q in qs]
    lo = torch.tensor([int(p) for p in pos], device=device)
    hi = torch.clamp(lo + 1, max=n - 1)
    frac = torch.tensor([p - int(p) for p in pos], device=device, dtype=dtype)
    return lo, hi, frac


def quantiles(values: torch.Tensor, positions) -> torch.Tensor:
    """torch.quantile (linear interpolation) of a 1-D tensor by one sort and fixed positions: no host
    sync, and nothing to check on the device."""
    lo, hi, frac = positions
    ordered = values.sort().values
    return torch.lerp(ordered[lo], ordered[hi], frac)


def histogram(chans: torch.Tensor, bins: int) -> torch.Tensor:
    """Each row of ``chans`` (C x M) binned on ``bins`` equal bins of that row's own finite range.

    Returns C x (2 * bins + 2) float64, per row: ``bins`` counts, then the number of non-finite values
    (NaN, +-inf: counted apart, never in a bin), then the ``bins + 1`` edges. Counts plus the
    non-finite count sum to M. Bin i holds the values in [edge_i, edge_{i+1}), the last bin also
    its right edge; the edges are made on the device and values are placed by ``searchsorted``
    against exactly those edges, so the stored edges are the ones used. A constant row (zero range)
    gets the range value +- 1e-3 * max(|value|, 1), its values in the middle bin; a row with no finite
    value gets edges around 0 and all-zero counts. No host sync: every step is a fixed-size tensor op.
    """
    finite = chans.isfinite()
    lo = torch.where(finite, chans, torch.inf).amin(1)
    hi = torch.where(finite, chans, -torch.inf).amax(1)
    empty = ~torch.isfinite(lo)  # no finite value in the row
    lo, hi = torch.where(empty, 0.0, lo), torch.where(empty, 0.0, hi)
    pad = torch.where(hi > lo, 0.0, 1e-3 * torch.clamp(lo.abs(), min=1.0))
    lo, hi = lo - pad, hi + pad
    t = torch.linspace(0, 1, bins + 1, device=chans.device, dtype=chans.dtype)
    # lo * (1 - t) + hi * t: never overflows where hi - lo would (|values| near the float32 limit)
    edges = (lo[:, None] * (1 - t) + hi[:, None] * t).cummax(1).values
    edges[:, 0], edges[:, -1] = lo, hi
    idx = torch.searchsorted(edges, torch.where(finite, chans, lo[:, None]).contiguous(), right=True) - 1
    idx = torch.where(finite, idx.clamp_(0, bins - 1), bins)  # the extra slot counts non-finite values
    idx += torch.arange(chans.shape[0], device=chans.device)[:, None] * (bins + 1)
    # scatter_add, not bincount: bincount reads the largest index back to the host (a sync on a GPU)
    counts = torch.zeros(chans.shape[0] * (bins + 1), dtype=torch.int64, device=chans.device)
    counts = counts.scatter_add_(0, idx.reshape(-1), torch.ones_like(idx).reshape(-1)).reshape(chans.shape[0], bins + 1)
    return torch.cat([counts.double(), edges.double()], 1)  # float64: counts exact to 2**53


def sample_positions(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``min(k, n)`` distinct positions of ``range(n)``, uniformly at random, in O(k) work.

    ``randperm(n)[:k]`` is exact but O(n): for VGG-16's layers at batch 128 (35 M values in all) it
    cost 0.8 s of host time per run, a fifth of a 1000-step GPU benchmark. Here: draw k' >= k
    positions with replacement, keep the distinct ones, and take a uniform k-subset of those; by
    symmetry every k-subset of range(n) is equally likely. Small layers use randperm."""
    if n <= 4 * k:
        return torch.randperm(n, generator=generator)[:k]
    while True:  # k' = 1.25 k + 64 draws leave >= k distinct ones with overwhelming probability
        distinct = torch.randint(n, (k + k // 4 + 64,), generator=generator).unique()
        if len(distinct) >= k:
            return distinct[torch.randperm(len(distinct), generator=generator)[:k]]
