"""What is due at step t: one rule for every cadence (big_vision's ``itstime``), one object that asks it.

The loop calls ``Schedule.at(step)`` once per step, in order, and does what the answer says. Steps
count from 1; step t is the t-th update (PROTOCOL.md). Only the stop signal is not scheduled: it
arrives when it arrives, and the loop checks it after each step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import ProbeConfig, TrainConfig


def itstime(step: int, every: int | None, total: int | None = None, first: bool = False) -> bool:
    """Every ``every`` steps (0 or None: never), at the last step ``total``, and at step 1 if ``first``."""
    return (total is not None and step == total) or (first and step == 1) or (bool(every) and step % every == 0)


def tensorboard_rows(probe: ProbeConfig) -> Callable[[np.ndarray], np.ndarray]:
    """Which recorded probe steps also become TensorBoard points, over an array of steps: itstime's
    rule at ``probe.tb_every`` with step 1 (each point costs ~0.1 ms of Python; tables keep all)."""
    every = probe.tb_every
    return lambda steps: (steps == 1) | (steps % every == 0)


@dataclass(frozen=True)
class Due:
    ics: bool  # ICS measured around this step's update (Figure 3); the step stays eager
    landscape: bool  # the loss landscape along this step's gradient (Figure 4); eager
    sharpness: bool  # the curvature of this step's batch loss before its update (issue 30); eager
    full_stats: bool  # the probes' histograms, quantiles and layer summaries (on either probe.batch)
    flush: bool  # start copying pending metrics to the host, write what has arrived
    wait: bool  # ... and wait for all of it (evaluation and checkpoints wait for the device anyway)
    eval: bool  # test loss and accuracy
    noisy_readings: bool  # ... and a noisy net's two more (recalibrated BN, noise on): costly, rarer
    checkpoint: bool
    steady_start: bool  # the steady-rate clock starts here (one host sync per run)
    last: bool

    @property
    def measuring(self) -> bool:
        """ICS, landscape and sharpness steps run eagerly (several forwards and backwards on copies of
        the weights, or through the gradient's graph)."""
        return self.ics or self.landscape or self.sharpness


class Schedule:
    def __init__(self, cfg: TrainConfig, start: int):
        """``start``: the step already done (0, or the checkpoint's step on a resume)."""
        self.cfg, self.t = cfg, cfg.trainer
        self.steady_from = start + self.t.steady_after  # the steady clock skips warm-up and compilation
        self.pending = 0  # steps since the last flush

    def at(self, step: int) -> Due:
        t, cfg = self.t, self.cfg
        last = step == t.max_steps
        checkpoint = itstime(step, t.checkpoint_every, t.max_steps)
        evaluate = itstime(step, t.eval_every, t.max_steps)
        self.pending += 1
        flush = self.pending == t.log_every or checkpoint or evaluate
        if flush:
            self.pending = 0
        return Due(ics=cfg.ics.enabled and itstime(step, cfg.ics.every, first=True),
                   landscape=cfg.landscape.enabled and itstime(step, cfg.landscape.every, first=True),
                   sharpness=cfg.sharpness.enabled and itstime(step, cfg.sharpness.every, first=True),
                   full_stats=cfg.probe.enabled and itstime(step, cfg.probe.every, first=True),
                   flush=flush, wait=checkpoint or evaluate, eval=evaluate,
                   noisy_readings=evaluate and itstime(step, cfg.eval.noisy_modes_every, t.max_steps), checkpoint=checkpoint,
                   steady_start=step == self.steady_from and not last, last=last)
