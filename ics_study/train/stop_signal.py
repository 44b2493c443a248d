"""Stopping a run cleanly on a signal, and letting the scheduler act on it afterwards."""

from __future__ import annotations

import signal


class StopSignal:
    """SIGTERM / SIGINT / SIGUSR2 set a flag; the loop checkpoints and stops at the end of the step.

    On leaving, a signal that arrived is passed on to the handler that was there before (submitit's
    on SLURM, which requeues the job; the requeued job then resumes from the checkpoint)."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR2", None)):
            if sig is None:
                continue
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a threaded launcher): leave signals alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        previous = self._previous.get(self.received)
        if self.received is not None and callable(previous) and previous is not signal.default_int_handler:
            previous(self.received, None)  # e.g. submitit: checkpoint done, now requeue
