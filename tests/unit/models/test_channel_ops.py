"""The per-channel helpers that the l_p norms and BN's parts share (models/channel_ops.py)."""

from __future__ import annotations

import pytest
import torch

from ics_study.models.channel_ops import add_per_channel_, mean_var

CASES = [((8, 16, 5, 7), True), ((8, 16, 5, 7), False), ((32, 16), False)]
IDS = ["channels_last", "nchw", "linear"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape,channels_last", CASES, ids=IDS)
def test_the_per_channel_add_is_the_broadcast_add_to_the_bit(dtype, shape, channels_last):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(6)).to(dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    v = torch.randn(shape[1], generator=torch.Generator().manual_seed(7)).to(dtype)
    want = t + v.view((1, -1) + (1,) * (t.dim() - 2))
    out = t.clone(memory_format=torch.preserve_format)
    assert add_per_channel_(out, v) is out  # in place
    assert torch.equal(out, want) and out.stride() == t.stride()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape,channels_last", CASES, ids=IDS)
def test_mean_var_is_the_biased_variance_in_fp32_without_gradient(dtype, shape, channels_last):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(8)) * 3 + 2).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    mean, var = mean_var(x.requires_grad_())
    dims = (0,) if x.dim() == 2 else (0, 2, 3)
    want_var, want_mean = torch.var_mean(x.detach().double(), dim=dims, correction=0)
    assert mean.dtype == var.dtype == torch.float32 and not mean.requires_grad and not var.requires_grad
    torch.testing.assert_close(mean.double(), want_mean, rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(var.double(), want_var, rtol=2e-5, atol=1e-6)
