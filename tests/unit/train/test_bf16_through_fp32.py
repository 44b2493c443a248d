"""bf16 through fp32's kernels (``precision.Bf16ThroughFp32``, the CPU path without native bf16): each
operation and its gradients are the exact result on bf16 operands, rounded once to bf16, up to fp32's
sums (as oneDNN's bf16 kernels compute them); the forward matches torch's own bf16 autocast; and
``autocast`` takes the path exactly where the CPU lacks bf16 arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ics_study.train import precision
from ics_study.train.precision import Bf16ThroughFp32

BF16 = torch.bfloat16
ULP = 2.0**-7  # bf16's spacing relative to a value, at worst (8 bits of significand)


def _operation(name: str, generator: torch.Generator):
    """(function of the fp32 leaves, the leaves) for one operation autocast runs in bf16."""
    def r(*shape):
        return torch.randn(*shape, generator=generator, requires_grad=True)
    if name == "conv2d":
        x, w, b = r(4, 8, 10, 10), r(16, 8, 3, 3), r(16)
        return lambda x, w, b: F.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=1), (x, w, b)
    if name == "linear":
        x, w, b = r(32, 64), r(10, 64), r(10)
        return F.linear, (x, w, b)
    if name == "matmul":
        return (lambda a, b: a @ b), (r(3, 20, 30), r(30, 12))
    if name == "addmm":
        return torch.addmm, (r(20, 12), r(20, 30), r(30, 12))
    raise ValueError(name)


def _upstream(out: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1, 1, out.numel()).view_as(out).to(BF16)


def _run(name: str, through_fp32: bool):
    fn, leaves = _operation(name, torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=BF16):
        if through_fp32:
            with Bf16ThroughFp32():
                out = fn(*leaves)
        else:
            out = fn(*leaves)
    out.backward(_upstream(out))
    return out, [leaf.grad for leaf in leaves]


def _exact(name: str):
    """In float64 from the bf16-rounded leaves and upstream gradient, each result rounded once to bf16."""
    fn, leaves = _operation(name, torch.Generator().manual_seed(0))
    exact = [leaf.detach().to(BF16).double().requires_grad_() for leaf in leaves]
    out = fn(*exact)
    out.backward(_upstream(out).double())
    return out.to(BF16), [leaf.grad.to(BF16).float() for leaf in exact]


def _within_one_rounding(got: torch.Tensor, want: torch.Tensor) -> None:
    got, want = got.float(), want.float()
    scale = want.abs().clamp_min(want.abs().max() * 2**-10)  # near-cancelled sums: their own scale is noise
    assert ((got - want).abs() <= ULP * scale).all()
    assert (got == want).float().mean() > 0.95  # mostly bit-equal: the same roundings, in another order


@pytest.mark.parametrize("name", ["conv2d", "linear", "matmul", "addmm"])
def test_each_operation_and_its_gradients_round_the_exact_result_once(name):
    got, got_grads = _run(name, through_fp32=True)
    want, want_grads = _exact(name)
    assert got.dtype == BF16
    _within_one_rounding(got, want)
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == torch.float32  # the leaves' own dtype, as autocast's casts give back
        assert torch.equal(g, g.to(BF16).float())  # bf16-valued, as through autocast's cast
        _within_one_rounding(g, w)


@pytest.mark.parametrize("name", ["conv2d", "linear", "matmul", "addmm"])
def test_the_forward_is_torch_autocast_bf16(name):
    """Against torch's own bf16 path on this machine (oneDNN where the CPU has bf16; elsewhere a slow
    im2col path, whose backward sums in bf16 and so is no reference for the gradients)."""
    got, _ = _run(name, through_fp32=True)
    want, _ = _run(name, through_fp32=False)
    assert want.dtype == BF16
    _within_one_rounding(got, want)


def test_it_is_bf16_not_fp32():
    """The path really rounds: its result is bf16's, not fp32's, away from the values bf16 holds."""
    fn, leaves = _operation("linear", torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=BF16), Bf16ThroughFp32():
        got = fn(*leaves)
    exact = fn(*(leaf.detach().to(BF16).double() for leaf in leaves))
    fp32 = fn(*(leaf.detach() for leaf in leaves))
    assert torch.equal(got.float(), exact.to(BF16).float())  # bf16 operands, one rounding at the end
    assert not torch.equal(got.float(), fp32)


def test_outside_autocast_or_for_other_operations_it_does_nothing():
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    w = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    with Bf16ThroughFp32():
        assert torch.equal(F.linear(x, w), F.linear(x, w).detach())  # no autocast: fp32 untouched
        assert F.linear(x, w).dtype == torch.float32
    with torch.autocast("cpu", dtype=BF16), Bf16ThroughFp32():
        assert torch.relu(x).dtype == torch.float32 and torch.equal(torch.relu(x), x.clamp_min(0))


@pytest.mark.parametrize(("native", "precision_", "mode_on"), [(False, "bf16", True), (True, "bf16", False),
                                                                (False, "fp32", False)])
def test_autocast_takes_the_path_only_on_a_cpu_without_bf16(monkeypatch, native, precision_, mode_on):
    monkeypatch.setattr(precision, "bf16_is_native", lambda device: native)
    assert not torch._C._is_torch_function_mode_enabled()
    with precision.autocast(torch.device("cpu"), precision_):
        assert torch._C._is_torch_function_mode_enabled() == mode_on
        assert torch.is_autocast_enabled("cpu") == (precision_ == "bf16")
    assert not torch._C._is_torch_function_mode_enabled() and not torch.is_autocast_enabled("cpu")
