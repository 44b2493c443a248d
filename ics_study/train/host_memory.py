"""CPU training: keep freed host memory for reuse instead of handing it back to the kernel.

glibc's ``malloc`` serves every block of 32 MB or more with its own ``mmap`` and returns it with
``munmap`` as soon as it is freed. A CPU training run allocates and frees such blocks all the time
(at width 1 one conv activation of a 128-image batch is 33.5 MB; at evaluation's batch of 1000 even
width 1/4 makes 65 MB ones), so every new tensor of that size page-faults its memory in again,
4 KB at a time, and the kernel zeroes each page first. Turning ``mmap`` off (``M_MMAP_MAX = 0``) and
trimming only very large free tops of the heap makes those blocks come from the heap and be reused.

Measured by fresh processes in alternation (numbers in docs/performance.md): the test-set
evaluation at batch 1000 much faster, training steps at most a little. The cost: the process keeps
its peak heap until it exits (a training process reaches it in its first steps anyway), and glibc
may hold a few freed blocks that do not fit PyTorch's aligned requests before it starts reusing
them (``tests/unit/train/test_host_memory.py``: 4-8 cycles of a 64 MB tensor). ``trainer.reuse_host_memory=false``
keeps glibc's defaults. Elsewhere (macOS, musl) this does nothing. Process-wide and not undone: it is
switched on once, by ``train()`` on a CPU device.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_ABOVE = 2**31 - 1  # bytes of free heap top kept before glibc gives any back: the most mallopt takes


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse; whether it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_ABOVE) == 1
