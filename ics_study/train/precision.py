"""Training precision: ``trainer.precision=fp32`` (the default: the paper's arithmetic) or ``bf16``.

bf16 is autocast: convolutions and matrix products run in bfloat16, parameters, optimiser state,
BN statistics, the loss and every measurement stay float32. It pays only where the hardware has
bf16 arithmetic of its own: CPUs with AVX512-BF16 or AMX (oneDNN; measured 1.9x on VGG-16 here),
NVIDIA GPUs from Ampere (compute capability 8.0) on. Elsewhere PyTorch emulates it, which is
correct but slower than fp32, so ``train`` says so in one warning line (``bf16_note``).
docs/performance.md ("Default precision") has the evidence that bf16 keeps the study's results.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch


def autocast(device: torch.device, precision: str, cache: bool = True):
    """The context a forward pass runs in. ``cache=False`` inside a CUDA graph: autocast's weight
    cache would be captured once and then go stale."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 itself (rather than through emulation)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def fastest(device: torch.device) -> str:
    """bf16 where ``device`` computes it natively, else fp32 (emulated bf16 is 11x slower than fp32 on an
    AVX2 CPU): for benchmarks and tests that want the campaign's precision without paying for emulation."""
    return "bf16" if bf16_is_native(device) else "fp32"


def bf16_note(device: torch.device, precision: str) -> str | None:
    """One line for the log when bf16 was asked for on hardware that only emulates it; else None."""
    if precision != "bf16" or bf16_is_native(device):
        return None
    what = ("this GPU (bf16 needs compute capability 8.0 or newer)" if device.type == "cuda"
            else "this CPU (no AVX512-BF16 or AMX)" if device.type == "cpu" else f"device {device}")
    return (f"trainer.precision=bf16: {what} has no native bf16, so PyTorch emulates it and training "
            f"will be slower than fp32 (11x on an AVX2 CPU: docs/performance.md); use trainer.precision=fp32")
