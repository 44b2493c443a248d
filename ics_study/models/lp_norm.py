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
from . import channel_ops


class LpNorm(nn.Module):
    # the fused training path (_LpNormFunction); ``twice_differentiable()`` turns it off: its backward,
    # differentiated again, treats the batch mean and norm as constants, so H v through it is wrong
    fused = True

    def __init__(self, num_features: int, p: float, cfg: LpConfig):
        super().__init__()
        self.p, self.cfg = float(p), cfg
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_norm", torch.ones(num_features))

    def batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per channel: the batch mean and the l_p norm of the text above, accumulated in fp32."""
        rows = channel_ops.rows(x)
        mean = _mean(rows)
        if self.cfg.norm_of_centered:
            return mean, _power_mean(rows.to(mean.dtype) - mean, self.p)
        return mean, _power_mean(rows, self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.cfg.center and not self.cfg.norm_of_centered and LpNorm.fused:
            y, mean, norm = _LpNormFunction.apply(x, self.weight, self.bias, self.p, self.cfg.eps)
        elif self.training:  # the other readings [I]: autograd through the formula
            mean, norm = self.batch_stats(x)
            y = self._affine(x, mean, norm)
        elif self.cfg.center:  # evaluation: BN's evaluation kernel, one pass (see _LpNormFunction)
            var = (self.running_norm + self.cfg.eps).square() - self.cfg.eps
            return torch.batch_norm(x, self.weight, self.bias, self.running_mean, var, False, 0.0, self.cfg.eps, False)
        else:
            return self._affine(x, self.running_mean, self.running_norm)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.cfg.momentum)
            self.running_norm.lerp_(norm.detach(), self.cfg.momentum)
        return y

    def _affine(self, x: torch.Tensor, mean: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        mean, norm = mean.to(x.dtype), norm.to(x.dtype)
        centred = x - channel_ops.per_channel(mean, x) if self.cfg.center else x
        y = centred / (channel_ops.per_channel(norm, x) + self.cfg.eps)
        return y * channel_ops.per_channel(self.weight, x) + channel_ops.per_channel(self.bias, x)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, p={self.p}"


def _mean(rows: torch.Tensor) -> torch.Tensor:
    return rows.sum(0, dtype=channel_ops.stat_dtype(rows)) / len(rows)


def _power_mean(rows: torch.Tensor, p: float) -> torch.Tensor:
    """(mean |x|^p)^(1/p) per column in fp32 (max |x| for p = inf). Sums, not torch.linalg.vector_norm:
    torch's CPU reductions over the outer dimension of a (positions, channels) view are vectorised
    for sums and 2-5x slower for norms and maxima (measured at VGG-16 width 1/4 on an AMD EPYC)."""
    if math.isinf(p):
        return _largest(rows)[0]
    v = rows.to(channel_ops.stat_dtype(rows))  # the input itself when it is fp32: no in-place op on v
    if p == 2:
        return v.square().sum(0).div_(len(rows)).sqrt_()
    if p == 1:  # |x| is exact in any dtype: summed in fp32 without an fp32 copy (4.1 ms a bf16 step, 6.8 with it)
        return rows.abs().sum(0, dtype=v.dtype).div_(len(rows))
    return v.abs().pow_(p).sum(0).div_(len(rows)).pow_(1.0 / p)


def _cpu_stats(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The fused function's statistics on a CPU: the batch mean, the norm, and where l_inf's largest |x|
    is. The means come from BN's own statistics kernel (one vectorised pass, fp32 accumulation; it
    also gives the biased variance, and mean x^2 = var + mean^2 is l2's norm). For the 13 layers of
    VGG-16 at width 1/4, batch 128 (AMD EPYC): the mean 1.8 ms a step against 3.7 for a bf16 sum in
    fp32; l2 2.1 against 18.8 for a sum and a sum of squares of an fp32 copy (bf16), 2.0 against 4.6
    (fp32); l1 in bf16 3.8 against 7.2 (the mean of |x|; fp32 keeps the sum: 4.5 against 5.0). Each
    agrees with the sums to fp32 summation's size (<= 2e-5 relative). A GPU keeps the sums."""
    mean, var = channel_ops.mean_var(x)
    if p == 2:
        return mean, (var + mean.square()).sqrt(), None
    if p == 1 and x.dtype == torch.bfloat16:
        return mean, channel_ops.mean_var(x.abs())[0], None
    rows = channel_ops.rows(x)
    return (mean, *_largest(rows)) if math.isinf(p) else (mean, _power_mean(rows, p), None)


def _largest(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max |x| per column (exact in any dtype) and where it is."""
    value, at = rows.abs().max(0)
    return value.to(channel_ops.stat_dtype(rows)), at


class _LpNormFunction(torch.autograd.Function):
    """The paper's reading (centred, the norm of the un-centred x) in BN's fused kernels.

    Forward: y = gamma (x - mu) a + beta with a = 1 / (n + eps) is BN's evaluation-mode transform
    with mean mu and variance (n + eps)^2 - eps, so BN's own kernel writes it in one pass (fp32
    arithmetic, the input's dtype out). Backward: BN's evaluation-mode backward gives, in one pass,
    gamma a g, dgamma = a sum(g (x - mu)) and dbeta = sum(g); what it leaves out, the dependence of
    mu and n on x, is per channel a constant plus a multiple of dn/dx:

        dL/dx = gamma a g - gamma a dbeta / P + (dL/dn) dn/dx,      dL/dn = -gamma a dgamma
        dn/dx = x / (P n) (p = 2),   sign(x) / P (p = 1),   sign(x) at the largest |x| (p = inf)

    (P positions per channel). Two or three elementwise passes against the ~10 of autograd through
    the formula (1.6-2x a BN layer's step before). tests/unit/models/test_lp_norm.py: gradcheck in float64 and
    the formula's own gradients.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, p, eps):
        if x.device.type == "cpu":
            mean, norm, at = _cpu_stats(x, p)
        else:
            rows = channel_ops.rows(x)
            mean = _mean(rows)
            norm, at = _largest(rows) if math.isinf(p) else (_power_mean(rows, p), None)
        var = (norm + eps).square() - eps  # BN's kernel divides by sqrt(var + eps) = n + eps
        y = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)
        ctx.save_for_backward(x, weight, mean, norm, var, at)
        ctx.p, ctx.eps = p, eps
        ctx.mark_non_differentiable(mean, norm)
        return y, mean, norm

    @staticmethod
    def backward(ctx, grad, _mean, _norm):
        x, weight, mean, norm, var, at = ctx.saved_tensors
        p, eps = ctx.p, ctx.eps
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(memory_format=channel_ops.layout(x)), x, weight, mean, var, None, None, False, eps, [True, True, True])
        positions = x.numel() // x.shape[1]
        a = 1.0 / (norm + eps)
        dnorm = -weight * a * grad_w  # dL/dn per channel
        shift = -weight * a * grad_b / positions
        if p == 2:
            grad_x.addcmul_(x, channel_ops.per_channel((dnorm / (positions * norm)).to(x.dtype), x))
        elif p == 1:
            grad_x.addcmul_(x.sign(), channel_ops.per_channel((dnorm / positions).to(x.dtype), x))
        else:  # the subgradient at one largest |x| per channel (autograd's amax splits ties)
            rows, grad_rows = channel_ops.rows(x), channel_ops.rows(grad_x)
            channel = torch.arange(rows.shape[1], device=x.device)
            grad_rows.index_put_((at, channel), (dnorm * rows[at, channel].sign()).to(x.dtype), accumulate=True)
            grad_x = grad_rows.view(*x.shape[:1], *x.shape[2:], x.shape[1]).movedim(-1, 1)  # a view, or NCHW's copy
        channel_ops.add_per_channel_(grad_x, shift)
        return grad_x, grad_w, grad_b, None, None
