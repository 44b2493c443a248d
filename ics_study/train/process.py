"""Settings of the whole process, not of one run: the device, threads, host-memory reuse,
determinism, cuDNN autotuning. ``configure`` applies them before a run is built; it is idempotent,
so every ``train()`` of a sweep that shares the process may call it (several runs stepped in one
process share these settings by nature).
"""

from __future__ import annotations

import os
import platform

import torch

from ..config import TrainerConfig
from ..errors import UserError
from .host_memory import keep_freed_memory


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=cpu or auto")
    return device


# torch's thread count when the process started: what trainer.threads=0 ("every core") restores after
# a job of a sweep in the same process (Hydra's basic launcher) asked for fewer
ALL_THREADS = torch.get_num_threads()


def configure(t: TrainerConfig, device: torch.device) -> None:
    torch.set_num_threads(t.threads or ALL_THREADS)
    if device.type == "cpu" and t.reuse_host_memory:
        keep_freed_memory()
    if t.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, set before its first use in the process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic
        if device.index is not None:
            torch.cuda.set_device(device)
        # the summary's peak memory is the process's from here: per job when a sweep shares the process
        torch.cuda.reset_peak_memory_stats(device)


CPUINFO = "/proc/cpuinfo"  # Linux's description of the CPU; absent elsewhere


def hardware(device: torch.device) -> str:
    """What ran a run, for its summary: the GPU's name, or the CPU's model name with its family and
    model numbers and torch's thread count. Wall times from different machines are not comparable,
    and a CPU's name alone can hide it: "AMD EPYC" covers both AVX2-only and AVX512-BF16 parts,
    whose bf16 runs differ 2.5x in speed."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    fields: dict[str, str] = {}
    try:
        with open(CPUINFO) as f:
            for line in f:
                if not line.strip() and fields:
                    break  # the first processor's block names the machine
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: the platform's own name
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    numbers = f"family {fields['cpu family']} model {fields['model']}, " if {"cpu family", "model"} <= fields.keys() else ""
    threads = torch.get_num_threads()
    return f"{name} ({numbers}{threads} thread{'s' * (threads != 1)})"
