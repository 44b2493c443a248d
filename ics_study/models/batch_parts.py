"""BatchNorm taken apart (issue 29: which part of BN does the work), each in the norm registry (norms.py).

    batch_center   y = gamma (x - mu_B) + beta                       centring only
    batch_scale    y = gamma x / sqrt(var_B + eps) + beta             scaling only (var_B about mu_B)
    batch_running  y = gamma (x - mu_R) / sqrt(var_R + eps) + beta    the running statistics, in training too

mu_B, var_B: the batch statistics of a channel over N (and H, W), with gradients through them as in
BN; var_B is the biased estimate that BN normalises with. mu_R, var_R: the running statistics,
updated from every training batch exactly as BN updates them (momentum, unbiased variance), without
gradient. ``batch_running`` normalises with the statistics from before the batch's own update, so
in training it is the evaluation-mode BN of that moment [I]; at initialisation (mu_R = 0, var_R = 1)
it is the identity up to gamma and beta. Evaluation mode of every part uses the running statistics
of what it normalises with (the mean for ``center``, the variance for ``scale``). Statistics are
accumulated in fp32 also under bf16 autocast. Where the statistics are constants (``running``, and
every part in evaluation mode) the transform is BN's evaluation kernel (one pass, a fused backward).
"""

from __future__ import annotations

import torch
from torch import nn

PARTS = ("center", "scale", "running")


class PartialBatchNorm(nn.BatchNorm2d):
    def __init__(self, channels: int, part: str, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(channels, eps=eps, momentum=momentum)
        if part not in PARTS:
            raise ValueError(f"part={part!r}: one of {PARTS}")
        self.part = part

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        n = x.numel() // x.shape[1]
        if self.training and self.part == "center":
            y, mean = _Centre.apply(x, dims)
            self._update(mean.view(-1), None, n)
            return y * self.weight.view(shape) + self.bias.view(shape)
        if self.part == "running" or not self.training:  # BN's evaluation kernel: one pass, fused backward
            mean, var = self.running_mean.clone(), self.running_var.clone()  # before this batch's update
            if self.training:
                with torch.no_grad():
                    v, m = torch.var_mean(x.detach().float(), dim=dims, correction=0)
                self._update(m, v, n)
            if self.part == "center":
                var = torch.full_like(var, 1.0 - self.eps)  # normalises by sqrt(var + eps) = 1
            elif self.part == "scale":
                mean = torch.zeros_like(mean)
            return torch.batch_norm(x, self.weight, self.bias, mean, var, False, 0.0, self.eps, False)
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)  # scaling only, in training
        self._update(mean.detach(), var.detach(), n)
        return torch.addcmul(self.bias.view(shape), x, (self.weight * torch.rsqrt(var + self.eps)).view(shape))

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var: torch.Tensor | None, n: int) -> None:
        """BN's running update: momentum-weighted, with the unbiased variance (none for centring only)."""
        self.running_mean.lerp_(mean, self.momentum)
        if var is not None:
            self.running_var.lerp_(var * (n / max(n - 1, 1)), self.momentum)
        self.num_batches_tracked.add_(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, part={self.part}"


class _Centre(torch.autograd.Function):
    """(x - its batch mean per channel, the mean). The backward subtracts the gradient's own mean, in
    the gradient's layout: autograd's broadcast of the mean's gradient came back NCHW beside an NHWC
    gradient (a strided add on a GPU)."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        mean = x.float().mean(dims, keepdim=True)
        ctx.mark_non_differentiable(mean)
        return x - mean, mean

    @staticmethod
    def backward(ctx, grad, _):
        return grad - grad.float().mean(ctx.dims, keepdim=True), None
