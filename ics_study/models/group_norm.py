"""Normalisers without batch statistics (issue 29's "other normalisers"): LayerNorm, GroupNorm and
weight standardisation, each in the norm registry (norms.py).

- ``layer``: LayerNorm over (C, H, W) of each sample (over C for a linear layer), with a gamma and a
  beta per channel, as GroupNorm with one group is [I] (Ba et al.'s per-element affine would tie the
  layer to one input size).
- ``group``: GroupNorm (Wu and He 2018) with ``model.groups`` groups; a layer with fewer channels, or
  a number of channels it does not divide, takes the largest divisor of its channels below it [I]:
  at width 1/4 the 16-channel layers are then InstanceNorm-like (one channel per group).
  ``model.groups=1`` is LayerNorm; a large value is InstanceNorm everywhere.
- ``ws_group``: GroupNorm after convolutions whose weights are standardised per output channel
  (Qiao et al. 2019): W_hat = (W - mean(W)) / sqrt(var(W) + eps) over (in, kh, kw), population
  variance, eps 1e-5 [I]. Hidden linear layers keep plain weights [I]. The optimiser updates W (the
  parameter), so ICS's gradient G is dL/dW, the layer's parameter, as for every other network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WS_EPS = 1e-5  # [I] Qiao et al.'s formula, sqrt(var + eps)


def groups_for(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups`` (and at least 1)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class GroupNorm(nn.GroupNorm):
    """torch's GroupNorm for (N, C, H, W) and (N, C) activations alike."""

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__(groups_for(channels, groups), channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.num_groups > 1 and x.dim() == 4 and not x.is_contiguous():
            # torch's CPU kernel for a channels-last input with several groups took 7-28 ms per layer
            # (forward and backward, VGG-16 width 1/4, batch 128; bf16 the slowest) where the NCHW kernel
            # took 0.7-1.4: two layout copies each way cost less (scripts/bench.py variants)
            nchw = _Relayout.apply(x, torch.contiguous_format, torch.channels_last)
            return _Relayout.apply(super().forward(nchw), torch.channels_last, torch.contiguous_format)
        return super().forward(x)


class _Relayout(torch.autograd.Function):
    """x copied into ``layout``, its gradient copied back into ``back``: each copy explicit, so that
    GroupNorm's kernels see one layout both ways (autograd's own copy hands the gradient back as it
    comes, and the backward kernel then read an NHWC gradient beside an NCHW input)."""

    @staticmethod
    def forward(ctx, x, layout, back):
        ctx.back = back
        return x.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.back), None, None


class WSConv2d(nn.Conv2d):
    """A convolution with standardised weights. Cost: a reduction and an elementwise pass over the
    weight per forward (a VGG-16's 15 M weights at width 1: ~2 ms on the CPU here, beside the convs)."""

    def standardized_weight(self) -> torch.Tensor:
        # on (out, in*kh*kw) rows in the weight's own memory order: its gradient then comes back in that
        # layout from both paths (direct and through the statistics), never one NCHW and one NHWC
        w = self.weight
        nhwc = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        rows = (w.permute(0, 2, 3, 1) if nhwc else w).reshape(w.shape[0], -1)
        var, mean = torch.var_mean(rows, dim=1, keepdim=True, correction=0)
        out = (rows - mean) / torch.sqrt(var + WS_EPS)
        return out.view(w.shape[0], *w.shape[2:], w.shape[1]).permute(0, 3, 1, 2) if nhwc else out.view_as(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
