"""Training precision: ``trainer.precision=fp32`` (the default: the paper's arithmetic) or ``bf16``.

bf16 is autocast: convolutions and matrix products run in bfloat16, parameters, optimiser state,
BN statistics, the loss and every measurement stay float32. It pays only where the hardware has
bf16 arithmetic of its own: CPUs with AVX512-BF16 or AMX (oneDNN; measured 1.9x on VGG-16 here),
NVIDIA GPUs from Ampere (compute capability 8.0) on. docs/performance.md ("Default precision") has
the evidence that bf16 keeps the study's results.

On a CPU without it, PyTorch's own bf16 convolutions fall back to a slow im2col path (98% of an
11x slower step on an AVX2 EPYC). There ``autocast`` computes each of them as ``Bf16ThroughFp32``
does: the bf16-rounded operands, exact in fp32, through fp32's kernels, the result rounded to bf16,
which is bf16 arithmetic with fp32 accumulation, as oneDNN's, up to the order of the sums: bf16's
numbers at fp32's speed. ``train`` says so in one line (``bf16_note``).
"""

from __future__ import annotations

import functools
from contextlib import ExitStack, nullcontext

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The context a forward pass runs in. ``cache=False`` inside a CUDA graph: autocast's weight
    cache would be captured once and then go stale."""
    if precision != "bf16":
        return nullcontext()
    context = torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    if not bf16_through_fp32(device, precision):
        return context
    stack = ExitStack()
    stack.enter_context(context)
    stack.enter_context(Bf16ThroughFp32())
    return stack


def bf16_through_fp32(device: torch.device, precision: str) -> bool:
    """Whether ``autocast`` runs bf16's convolutions and matrix products through fp32's kernels here."""
    return precision == "bf16" and device.type == "cpu" and not bf16_is_native(device)


# Autocast's bf16 operations on a CPU that the networks use, or may: convolutions and matrix products.
THROUGH_FP32 = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.linear,
                torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm, torch.Tensor.matmul,
                torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.bmm}


def _bf16_exact(a):
    return a.to(torch.bfloat16).float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a


class Bf16ThroughFp32(TorchFunctionMode):
    """Under CPU bf16 autocast, each operation of ``THROUGH_FP32`` as fp32's kernel on the operands
    rounded to bf16 (exact in fp32, as are their products), its result rounded to bf16; autograd
    rounds the gradients the same way. Each costs two casts of its operands beside fp32's kernel."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in THROUGH_FP32 and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16:
            with torch.autocast("cpu", enabled=False):
                out = func(*map(_bf16_exact, args), **{k: _bf16_exact(v) for k, v in kwargs.items()})
            return out.to(torch.bfloat16)
        return func(*args, **kwargs)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 itself (rather than through emulation)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _cpu_bf16_native()
    return False


@functools.cache
def _cpu_bf16_native() -> bool:
    # asked once: autocast() asks at every step, and the answer is the machine's
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_note(device: torch.device, precision: str) -> str | None:
    """One line for the log when bf16 was asked for on hardware that only emulates it; else None."""
    if precision != "bf16" or bf16_is_native(device):
        return None
    if bf16_through_fp32(device, precision):
        return ("trainer.precision=bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so convolutions and "
                "matrix products run through fp32's kernels on bf16-rounded operands, rounded to bf16: bf16's "
                "numbers at fp32's speed, no faster (docs/performance.md)")
    what = "this GPU (bf16 needs compute capability 8.0 or newer)" if device.type == "cuda" else f"device {device}"
    return (f"trainer.precision=bf16: {what} has no native bf16, so PyTorch emulates it and training "
            f"will be slower than fp32; use trainer.precision=fp32")
