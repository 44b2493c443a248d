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


def histogram(chans: torch.Tensor, limit: float, bins: int) -> torch.Tensor:
    """Counts of each row of ``chans`` (C x M) on ``bins`` equal bins of [-limit, limit], ends clamped.

    Non-finite values (a diverged run) are counted in the middle bin so that counts still sum to M."""
    width = 2 * limit / bins
    idx = ((chans.nan_to_num(nan=0.0) + limit) / width).floor().clamp_(0, bins - 1).long()
    idx += torch.arange(chans.shape[0], device=chans.device)[:, None] * bins
    # scatter_add, not bincount: bincount reads the largest index back to the host (a sync on a GPU)
    counts = torch.zeros(chans.shape[0] * bins, dtype=torch.int64, device=chans.device)
    return counts.scatter_add_(0, idx.reshape(-1), torch.ones_like(idx).reshape(-1)).reshape(chans.shape[0], bins)


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
