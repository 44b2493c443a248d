"""Kolmogorov-Smirnov distances for the noise's statistical tests (a fixed seed makes each test deterministic)."""

from __future__ import annotations

import math

import torch


def ks(sample: torch.Tensor, cdf) -> float:
    x = sample.double().flatten().sort().values
    n = len(x)
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max((i / n - f).max().item(), (f - (i - 1) / n).max().item())


def ks_limit(n: int, alpha: float = 1e-6) -> float:
    return math.sqrt(-math.log(alpha / 2) / (2 * n))


def uniform_cdf(lo, hi):
    return lambda x: ((x - lo) / (hi - lo)).clamp(0, 1)


def normal_cdf(x):
    return torch.special.ndtr(x)
