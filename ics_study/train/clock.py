"""Every time figure of a run, in one place (big_vision's ``Chrono``).

Training time is wall time less the pauses for evaluation and checkpoints, which are reported
apart; wall time has all three. The steady rate counts images per second of training time from
step ``trainer.steady_after`` of this process on, so that warm-up, compilation and graph capture
stay out of it. What earlier processes of a resumed run spent is carried in the checkpoint
(``state_dict``: the ``progress`` entries ``images``, ``train_time``, ``eval_time``,
``checkpoint_time``).
"""

from __future__ import annotations

import contextlib
import time

import torch

CARRIED = ("images", "train_time", "eval_time", "checkpoint_time")


class Clock:
    def __init__(self, device: torch.device):
        self.device = device
        self.before = dict.fromkeys(CARRIED, 0)  # earlier processes of this run
        self.start, self.images = time.perf_counter(), 0  # this process
        self.paused = {"eval": 0.0, "checkpoint": 0.0}
        self.steady_mark: tuple[int, float] | None = None  # (images, training time) where the steady clock starts

    # --- counting ----------------------------------------------------------------------------------
    def count(self, images: int) -> None:
        self.images += images

    @contextlib.contextmanager
    def pause(self, what: str):
        """Time spent inside is ``what`` ("eval" or "checkpoint"), not training."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused[what] += time.perf_counter() - began

    def start_steady(self) -> None:
        """Start the steady-rate clock. A host sync on a GPU (the only one it costs, once per run):
        the mark must not count steps still queued on the device."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.steady_mark = (self.images, self.training_time())

    # --- reading -----------------------------------------------------------------------------------
    def training_time(self) -> float:
        """Training time of this process so far."""
        return time.perf_counter() - self.start - self.paused["eval"] - self.paused["checkpoint"]

    def rate(self) -> float:
        """Images per second of training time, this process (for the progress bar)."""
        return self.images / max(self.training_time(), 1e-9)

    def totals(self) -> dict[str, float]:
        return {"images": self.before["images"] + self.images,
                "train_time": self.before["train_time"] + self.training_time(),
                "eval_time": self.before["eval_time"] + self.paused["eval"],
                "checkpoint_time": self.before["checkpoint_time"] + self.paused["checkpoint"]}

    def summary(self, completed: bool) -> dict[str, float | None]:
        """The summary's time figures. The steady rate needs a completed run (its end waited for the
        device) that got past ``trainer.steady_after`` in this process; otherwise None."""
        total = self.totals()
        steady = None
        if self.steady_mark is not None and completed:
            images, at = self.steady_mark
            steady = (self.images - images) / max(self.training_time() - at, 1e-9)
        return {"wall_time_s": total["train_time"] + total["eval_time"] + total["checkpoint_time"],
                "eval_time_s": total["eval_time"], "checkpoint_time_s": total["checkpoint_time"],
                "train_images_per_s": total["images"] / max(total["train_time"], 1e-9),  # training steps only
                "steady_images_per_s": steady}

    # --- checkpoint ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, float]:
        return self.totals()

    def load_state_dict(self, progress: dict) -> None:
        self.before = {k: progress.get(k, 0) for k in CARRIED}  # checkpoint_time: absent in old checkpoints
