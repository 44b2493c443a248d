"""Device results to the host without stopping the device.

A flush used to call ``.cpu()``: the host waited until the GPU had finished every queued step, and
the GPU then sat idle while the host wrote tables. Here a flush only *starts* the copy (into pinned
host memory, ``non_blocking``, an event behind it) and hands the numbers to their writer at a later
flush, when the copy has long finished. Nothing waits except ``drain()``, which a checkpoint, a
signal and the end of training call so that everything is written before they go on.

Reusing the device buffer right after ``start`` is safe: the copy is queued on the same stream
before whatever later overwrites it. On the CPU a copy is a plain clone and is handed over at once,
so CPU runs write exactly when they always did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch


class ReadBack:
    def __init__(self, device: torch.device):
        self.device = device
        self.queue: deque[tuple[torch.Tensor, torch.cuda.Event | None, Callable[[np.ndarray], None]]] = deque()

    def start(self, tensor: torch.Tensor, then: Callable[[np.ndarray], None]) -> None:
        """Copy ``tensor`` to the host; ``then(array)`` is called with it once it has arrived."""
        if tensor.is_cuda:
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = tensor.detach().clone(), None
        self.queue.append((host, event, then))

    def poll(self) -> None:
        """Hand over, in order, every copy that has arrived; never waits."""
        while self.queue and (self.queue[0][1] is None or self.queue[0][1].query()):
            host, _, then = self.queue.popleft()
            then(host.numpy())

    def drain(self) -> None:
        """Wait for every copy and hand it over."""
        while self.queue:
            host, event, then = self.queue.popleft()
            if event is not None:
                event.synchronize()
            then(host.numpy())
