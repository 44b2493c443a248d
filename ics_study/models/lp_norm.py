"""l_p normalisation (the paper's appendix, Figures 5, 6, 12, 13).

Like BN it subtracts the batch mean of each channel, but it divides by the batch-average l_p norm
of the *un-centred* activations instead of the standard deviation, then applies gamma and beta:

    mu_j = mean(x_j)                     over the batch (and H, W for conv layers)
    n_j  = (mean |x_j|^p)^(1/p)          p = 1, 2;   n_j = max |x_j| for p = inf
    y_j  = gamma_j * (x_j - mu_j) / (n_j + eps) + beta_j

"Average l_p norm" is read as the power mean above [I] (the only reading implemented). The other
choices the paper leaves open are ``LpConfig`` values [I]: whether to centre (yes), whether
the norm is of the centred activations (no), eps, and the
running statistics (mean and norm, momentum 0.1) used in evaluation mode, as BN does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import LpConfig


class LpNorm(nn.Module):
    def __init__(self, num_features: int, p: float, cfg: LpConfig):
        super().__init__()
        self.p, self.cfg = float(p), cfg
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_norm", torch.ones(num_features))

    def batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # over a (positions, channels) view: free for the channels-last activations the model runs
        # on, and the backward's broadcasts then share their layout (see tests/test_layouts.py)
        rows = x.movedim(1, -1).reshape(-1, x.shape[1])
        mean = rows.mean(0)
        base = rows - mean if self.cfg.norm_of_centered else rows
        if math.isinf(self.p):
            norm = base.abs().amax(0)
        else:
            norm = base.abs().pow(self.p).mean(0).pow(1.0 / self.p)
        return mean, norm

    @staticmethod
    def _shape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.reshape((1, -1) + (1,) * (like.dim() - 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # statistics in fp32 also under bf16 autocast, as BN's kernels accumulate them (and the
            # running buffers are fp32); for an fp32 input .float() is the tensor itself
            mean, norm = self.batch_stats(x.float())
            with torch.no_grad():
                m = self.cfg.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_norm.lerp_(norm.detach(), m)
        else:
            mean, norm = self.running_mean, self.running_norm
        mean, norm = mean.to(x.dtype), norm.to(x.dtype)
        centred = x - self._shape(mean, x) if self.cfg.center else x
        y = centred / (self._shape(norm, x) + self.cfg.eps)
        return y * self._shape(self.weight, x) + self._shape(self.bias, x)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, p={self.p}"
