"""The deep linear network's task (the paper's appendix): y = A x.

A is a seeded ``features x features`` Gaussian matrix, x ~ N(0, I); 1000 training samples (full-batch
gradient descent uses them all every step) and as many held-out samples for the test loss.
"""

from __future__ import annotations

import torch


def make_linear_regression(num_train: int, num_test: int, features: int = 10, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(20_011 + seed)
    a = torch.randn(features, features, generator=g)
    x_train = torch.randn(num_train, features, generator=g)
    x_test = torch.randn(num_test, features, generator=g)
    return x_train, x_train @ a.T, x_test, x_test @ a.T
