"""``train(cfg, run_dir) -> summary``: the training loop. No Hydra here; the CLI calls this.

Protocol (``../shared/docs/PROTOCOL.md``): SGD on cross-entropy, batch 128, constant lr, a fixed
number of steps. Step t means: forward/backward on batch t, then update t. The train loss and
accuracy of step t are those of batch t before its update; an evaluation at step t sees the
weights after update t.

Speed rules: the dataset lives on the device; per-step metrics are accumulated in a device buffer
and read back once every ``trainer.log_every`` steps (the only host sync outside evaluation);
probes keep their own device buffers and are flushed at the same moments. On a GPU, plain steps
and the probes' histogram steps replay CUDA graphs (``graphed_step.py``); ICS and landscape steps
stay eager.

The parts: ``process.py`` (settings of the process), ``run.py`` (what a run owns, its checkpoint
state, what it does between steps), ``step.py`` (one step: graph, eager or measured),
``schedule.py`` (what is due at step t), ``clock.py`` (every time figure). This file is the order
in which they are called.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..config import TrainConfig
from ..errors import UserError
from ..recording.storage import read_json, write_json
from ..validate import validate
from . import checkpoint, process
from .precision import bf16_note
from .run import Run
from .run_lock import RunLock
from .schedule import Schedule
from .stop_signal import StopSignal

log = logging.getLogger("ics_study.train")


def train(cfg: TrainConfig, run_dir: str | Path, on_step: Callable[[int], None] | None = None,
          graphed_step: type | None = None) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; continues from ``run_dir/checkpoint.pt`` (or
    ``trainer.resume``) when there is one. Returns the summary that is also ``summary.json``.
    ``on_step(step)``, if given, is called once each training step has been queued (before that
    step's flush, evaluation or checkpoint): for tools such as a profiler's schedule.
    ``graphed_step``, if given, replays the steps in place of ``GraphedStep`` on any device (the
    tests' and benchmarks' CPU stand-ins for a CUDA graph); None: ``GraphedStep`` where one is wanted.

    The run dir written into is locked for the whole run (``run_lock.py``): a second process on it
    is refused with ``RunLocked`` before it reads or writes anything there."""
    validate(cfg)
    target = Path(run_dir)
    if cfg.trainer.resume and (found := checkpoint.find(cfg.trainer.resume)) is not None:
        target = found.parent  # a resume writes into the run being resumed
    target.mkdir(parents=True, exist_ok=True)
    with RunLock(target, cfg.trainer.lock_wait_s):
        return _train(cfg, Path(run_dir), on_step, graphed_step)


def _train(cfg: TrainConfig, run_dir: Path, on_step: Callable[[int], None] | None, graphed_step: type | None) -> dict:
    t = cfg.trainer
    # === where to start: a checkpoint to continue, or nothing left to do ==============================
    source = checkpoint.find(t.resume) if t.resume else checkpoint.find(run_dir)
    if t.resume and source is None:
        raise UserError(f"trainer.resume={t.resume}: no {checkpoint.FILENAME} there")
    state = checkpoint.load(source, cfg) if source is not None else None
    if state is not None and t.resume:
        run_dir = source.parent  # continue writing into the run being resumed
    if state is not None and state["step"] >= t.max_steps and (run_dir / "summary.json").exists():
        return _already_done(run_dir, state["step"])
    if state is None and not t.resume and (steps := checkpoint.finished_without(run_dir, cfg)) is not None:
        return _already_done(run_dir, steps)

    # === the process, then the run ========================================================================
    device = process.pick_device(t.device)
    if (note := bf16_note(device, t.precision)) is not None:
        log.warning(note)
    process.configure(t, device)
    run = Run(cfg, run_dir, device, state, graphed_step)
    if state is not None:
        log.info("resuming %s from step %d (%s)", run_dir, run.step, source)
    schedule = Schedule(cfg, start=run.step)

    # === the loop: one step, then whatever is due, always in this order ==================================
    status = "completed"
    try:  # on any error, close the TensorBoard writer: a sweep in one process must not leak it
        with StopSignal() as stop:
            for step in range(run.step + 1, t.max_steps + 1):
                due = schedule.at(step)
                x, y = next(run.batches)
                run.train(step, x, y, due)  # queued on the device: graph replay, eager or measured
                if on_step is not None:
                    on_step(step)
                if due.steady_start:
                    run.clock.start_steady()  # a host sync, once per run
                stopping = bool(stop.received)  # a signal: checkpoint now, then stop
                # a flush reads back pending metrics; waiting costs nothing where evaluation or a
                # checkpoint waits for the device anyway
                if (due.flush or stopping) and not run.flush(wait=due.wait or stopping):
                    status = "diverged"
                    log.warning("loss became non-finite at step %d; stopping", run.diverged_at)
                    break
                if due.eval:
                    run.evaluate(step, due.noisy_readings)  # a host sync
                if due.checkpoint or stopping:
                    run.save_checkpoint()
                if stopping:
                    status = "interrupted"
                    log.warning("signal %d: checkpointed at step %d; rerun the same command to resume", stop.received,
                                step)
                    break
    except BaseException:
        run.abandon()
        raise
    return run.finish(status)


def _already_done(run_dir: Path, steps: int) -> dict:
    log.info("%s already holds %d steps: nothing to do", run_dir, steps)
    summary = json.loads((run_dir / "summary.json").read_text())
    status = read_json(run_dir / "status.json") or {}
    if status.get("status") != summary["status"]:  # e.g. a refused rerun of an older version marked it
        write_json(run_dir / "status.json", {"status": summary["status"], "time": time.time()})
    return summary
