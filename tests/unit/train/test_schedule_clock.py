"""The loop's schedule (what is due at step t) and its clock (every time figure), against
hand-worked cases."""

from __future__ import annotations

import ast

import numpy as np
import torch

from ics_study.train.clock import Clock
from ics_study.train.schedule import Schedule, itstime, tensorboard_rows
from tests.conftest import REPO, TINY, compose


def test_itstime_is_every_n_steps_the_last_and_optionally_the_first():
    assert [s for s in range(1, 13) if itstime(s, 5)] == [5, 10]
    assert [s for s in range(1, 13) if itstime(s, 5, total=12, first=True)] == [1, 5, 10, 12]
    assert [s for s in range(1, 13) if itstime(s, 0, total=12)] == [12]
    assert not any(itstime(s, None) for s in range(1, 13))


def test_the_schedule_of_a_run_worked_by_hand():
    # log_every 5, eval_every 6, 12 steps, checkpoint_every 4; ICS every 5, landscape every 6, probes every 4
    cfg = compose([*TINY, "trainer.checkpoint_every=4", "trainer.steady_after=3", "ics.enabled=true", "ics.every=5",
                   "ics.layers=[1]", "landscape.enabled=true", "landscape.every=6"])
    schedule = Schedule(cfg, start=0)
    due = {s: schedule.at(s) for s in range(1, 13)}
    steps = lambda field: [s for s, d in due.items() if getattr(d, field)]  # noqa: E731
    # a flush after 5 pending steps, or with an evaluation or a checkpoint (which reset the count)
    assert steps("flush") == [4, 6, 8, 12]
    assert steps("wait") == [4, 6, 8, 12] and steps("eval") == [6, 12] and steps("checkpoint") == [4, 8, 12]
    assert steps("noisy_readings") == [12]  # eval.noisy_modes_every=0: the last evaluation only
    assert steps("ics") == [1, 5, 10] and steps("landscape") == [1, 6, 12] and steps("full_stats") == [1, 4, 8, 12]
    assert steps("measuring") == [1, 5, 6, 10, 12]
    assert steps("steady_start") == [3] and steps("last") == [12]
    # a resume at step 6 starts the steady clock 3 steps later; fixed-batch probes keep the cadence
    resumed = Schedule(compose([*TINY, "trainer.steady_after=3", "probe.batch=fixed", "eval.noisy_modes_every=6"]),
                       start=6)
    later = {s: resumed.at(s) for s in range(7, 13)}
    assert [s for s, d in later.items() if d.steady_start] == [9]
    assert [s for s, d in later.items() if d.full_stats] == [8, 12]
    assert [s for s, d in later.items() if d.noisy_readings] == [12]
    assert [s for s, d in later.items() if d.flush] == [11, 12]  # 5 pending at 11, then the last step


class FakeTime:
    """perf_counter that moves only when told: the clock's accounting, free of this machine's load."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now


def test_the_clock_leaves_pauses_out_of_training_time_and_carries_over_a_resume(monkeypatch):
    import ics_study.train.clock as clock_module

    fake = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    clock = Clock(torch.device("cpu"))
    clock.load_state_dict({"images": 100, "train_time": 2.0, "eval_time": 1.0})  # an old checkpoint: no checkpoint_time
    fake.now += 0.5  # training
    with clock.pause("eval"):
        fake.now += 3.0
    with clock.pause("checkpoint"):
        fake.now += 0.25
    clock.count(64)
    assert clock.state_dict() == {"images": 164, "train_time": 2.5, "eval_time": 4.0, "checkpoint_time": 0.25}
    summary = clock.summary(completed=True)
    assert summary["wall_time_s"] == 6.75 and summary["train_images_per_s"] == 164 / 2.5
    assert summary["steady_images_per_s"] is None  # the steady clock never started
    clock.start_steady()
    clock.count(128)
    fake.now += 0.5
    with clock.pause("eval"):
        fake.now += 10.0
    assert clock.summary(completed=True)["steady_images_per_s"] == 128 / 0.5
    assert clock.summary(completed=False)["steady_images_per_s"] is None  # a stopped run's end did not wait


def test_only_the_schedule_reads_a_cadence():
    """When something happens is decided in train/schedule.py alone: the probes, the evaluation and
    the loop take ``Due`` and decide nothing about time (validate.py checks the values, no more)."""
    package = REPO / "ics_study"
    cadences = {"every", "eval_every", "checkpoint_every", "noisy_modes_every", "tb_every"}
    allowed = {"config.py", "validate.py", "train/schedule.py"}
    found = [f"{p.relative_to(package)}:{node.lineno} .{node.attr}" for p in package.rglob("*.py")
             if str(p.relative_to(package)) not in allowed for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Attribute) and node.attr in cadences]
    assert not found, "a cadence read outside the schedule: " + ", ".join(found)


def test_tensorboard_points_are_step_one_and_every_tb_every_th():
    rows = tensorboard_rows(compose([*TINY, "probe.tb_every=10"]).probe)
    steps = np.arange(1, 31)
    assert steps[rows(steps)].tolist() == [1, 10, 20, 30]
