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

from .channel_ops import add_per_channel_, layout, mean_var, per_channel, stat_dtype

PARTS = ("center", "scale", "running")


class PartialBatchNorm(nn.BatchNorm2d):
    # centring and scaling train through _BatchPart; ``norms.twice_differentiable()`` turns it off: its
    # backward treats the batch statistics as constants, so a Hessian-vector product through it is wrong
    fused = True

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
        mean, var = self.running_mean, self.running_var
        if self.training:
            batch_mean, batch_var = mean_var(x)
            if self.part == "running":
                mean, var = mean.clone(), var.clone()  # normalise with the statistics before this batch's
            self._update(batch_mean, None if self.part == "center" else batch_var, x.numel() // x.shape[1])
            if self.part != "running":  # the batch's statistics, with their gradients
                if PartialBatchNorm.fused:
                    return _BatchPart.apply(x, self.weight, self.bias, batch_mean, batch_var, self.part, self.eps)
                return self._formula(x)
        if self.part == "center":
            var = torch.full_like(var, 1.0 - self.eps)  # normalises by sqrt(var + eps) = 1
        elif self.part == "scale":
            mean = torch.zeros_like(mean)
        return torch.batch_norm(x, self.weight, self.bias, mean, var, False, 0.0, self.eps, False)

    def _formula(self, x: torch.Tensor) -> torch.Tensor:
        """Centring or scaling only through autograd (exact second derivatives, for the curvature probe)."""
        dims = (0,) if x.dim() == 2 else (0, 2, 3)
        v = x.to(stat_dtype(x))
        if self.part == "center":
            y = v - v.mean(dims, keepdim=True)
        else:
            y = v * torch.rsqrt(v.var(dims, correction=0, keepdim=True) + self.eps)
        return y * per_channel(self.weight, y) + per_channel(self.bias, y)

    @torch.no_grad()
    def _update(self, mean: torch.Tensor, var: torch.Tensor | None, n: int) -> None:
        """BN's running update: momentum-weighted, with the unbiased variance (none for centring only)."""
        self.running_mean.lerp_(mean, self.momentum)
        if var is not None:
            self.running_var.lerp_(var * (n / max(n - 1, 1)), self.momentum)
        self.num_batches_tracked.add_(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, part={self.part}"


class _BatchPart(torch.autograd.Function):
    """Centring or scaling only with the batch's statistics, in BN's evaluation kernels:

        center  y = gamma (x - mu_B) + beta       BN's transform with mean mu_B and variance 1 - eps
        scale   y = gamma x a + beta, a = 1 / sqrt(var_B + eps)    mean 0 and variance var_B

    One pass forward (fp32 arithmetic, the input's dtype out). Backward: BN's evaluation backward
    gives gamma a g, dgamma = a sum(g x_hat) and dbeta = sum(g); what it leaves out is the
    statistics' dependence on x, per channel (P positions):

        center  dL/dx += -gamma dbeta / P                                   (d mu_B / dx = 1 / P)
        scale   dL/dx += -gamma a^2 dgamma (x - mu_B) / P   (d var_B / dx = 2 (x - mu_B) / P)

    Autograd through the formula took 1.3x (center) and 1.9x (scale) a BN network's bf16 step on the
    CPU (fp32 copies, var_mean, broadcast products that promote to fp32). tests/unit/models/
    test_normalisers.py: gradients against autograd through the formula in float64, and gradcheck."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, part, eps):
        if part == "center":
            mean_used, var_used = mean, torch.full_like(var, 1.0 - eps)
        else:
            mean_used, var_used = torch.zeros_like(mean), var
        ctx.save_for_backward(x, weight, mean, mean_used, var_used)
        ctx.part, ctx.eps = part, eps
        return torch.batch_norm(x, weight, bias, mean_used, var_used, False, 0.0, eps, False)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, mean_used, var_used = ctx.saved_tensors
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(memory_format=layout(x)), x, weight, mean_used, var_used, None, None, False, ctx.eps,
            [True, True, True])
        positions = x.numel() // x.shape[1]
        if ctx.part == "center":
            add_per_channel_(grad_x, -weight * grad_b / positions)
        else:
            k = -weight * grad_w / ((var_used + ctx.eps) * positions)  # gamma a^2 dgamma / P; dgamma has one a
            grad_x.addcmul_(x, per_channel(k.to(x.dtype), x))
            add_per_channel_(grad_x, -k * mean)
        return grad_x, grad_w, grad_b, None, None, None, None
