"""The fault matrix: kill a run (SIGKILL: no handler runs) at each kind of moment, rerun the same
command, and compare every table, the summary (timing aside), the TensorBoard points and the final
weights with an uninterrupted run. The goal is 0 lost: every case must come back bit-identical.

The faults are armed by tests/helpers/fault_child.py, which wraps the real functions in the child process
only. Counts and what each moment means: docs/reliability.md ("The fault matrix").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ics_study.train import checkpoint
from tests.conftest import REPO, finished_cli_run
from tests.helpers.runs import ARGS, assert_same_run

TIMING = {"wall_time_s", "eval_time_s", "checkpoint_time_s", "train_images_per_s", "steady_images_per_s",
          "resumed_from", "peak_memory_gb", "cuda_graph"}

# Each case is its attempts, in order: (fault or None, CUDA-graph stand-in). Every attempt but the
# last must be killed by its fault; the last runs clean. 40 steps, checkpoints at 10/20/30/40,
# evaluations at 10/20/30/40, ICS every 7 steps (eager), table parts written at each checkpoint.
CASES = {
    "table_write-before-first-checkpoint": [("table_write:1", False), (None, False)],
    "table_write-later": [("table_write:6", False), (None, False)],
    "checkpoint_write-first": [("checkpoint_write:1", False), (None, False)],
    "checkpoint_write-third": [("checkpoint_write:3", False), (None, False)],
    "between_steps-15": [("between_steps:15", False), (None, False)],
    "between_steps-33-twice": [("between_steps:33", False), ("between_steps:4", False), (None, False)],
    "evaluation-first": [("evaluation:1", False), (None, False)],
    "evaluation-third": [("evaluation:3", False), (None, False)],
    "graph_capture-fresh": [("graph_capture:1", True), (None, True)],
    "graph_capture-after-resume": [("between_steps:25", True), ("graph_capture:1", True), (None, True)],
}
SWEEP = ["-m", "seed=0,1,2"]  # the sweep case: job #2 (the third) is killed, then the sweep is rerun


def child(*extra: str, fault: str | None = None, graph: bool = False, job: int | None = None):
    cmd = [sys.executable, "-m", "tests.helpers.fault_child"]
    cmd += ["--fault", fault] if fault else []
    cmd += ["--graph"] if graph else []
    cmd += ["--job", str(job)] if job is not None else []
    flags = [a for a in extra if a == "-m"]  # Hydra takes its flags before the overrides
    overrides = [a for a in extra if a != "-m"]
    return subprocess.run([*cmd, "--", *flags, *ARGS, *overrides], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def assert_killed(proc, fault):
    assert proc.returncode == -9, f"the fault {fault} never fired (exit {proc.returncode}): {proc.stderr[-2000:]}"


def assert_nothing_lost(run, reference):
    assert_same_run(run, reference)  # every table, the final metrics, no duplicated TensorBoard point
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    wa, wb = (checkpoint.read(r / checkpoint.FILENAME)["model"] for r in (run, reference))
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0, msg=f"final weights differ in {name}")
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert not [p for p in run.rglob("*.tmp")], "a temporary file was left behind"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return finished_cli_run(tmp_path_factory, "fault-ref", ARGS)


@pytest.mark.parametrize("attempts", CASES.values(), ids=CASES.keys())
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result(tmp_path, reference, attempts):
    run = tmp_path / "run"
    for fault, graph in attempts[:-1]:
        assert_killed(child(f"hydra.run.dir={run}", fault=fault, graph=graph), fault)
    final = child(f"hydra.run.dir={run}", graph=attempts[-1][1])
    assert final.returncode == 0, final.stderr[-3000:]
    assert_nothing_lost(run, reference)


def test_a_sweep_killed_in_its_third_job_resumes_to_the_uninterrupted_sweep(tmp_path):
    clean, faulty = tmp_path / "clean", tmp_path / "faulty"
    assert child(*SWEEP, f"hydra.sweep.dir={clean}").returncode == 0
    assert_killed(child(*SWEEP, f"hydra.sweep.dir={faulty}", fault="between_steps:25", job=2), "job 2 step 25")
    statuses = {d.name: json.loads((d / "status.json").read_text())["status"] for d in faulty.iterdir()
                if (d / "status.json").exists()}
    assert sorted(statuses.values()) == ["completed", "completed", "running"], statuses  # job 3 of 3 was running
    rerun = child(*SWEEP, f"hydra.sweep.dir={faulty}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    jobs = sorted(d.name for d in clean.iterdir() if d.is_dir() and (d / "summary.json").exists())
    assert len(jobs) == 3 and jobs == sorted(d.name for d in faulty.iterdir() if (d / "summary.json").exists())
    for job in jobs:
        assert_nothing_lost(faulty / job, clean / job)
    assert json.loads((faulty / jobs[2] / "summary.json").read_text())["resumed_from"] == 20


def test_the_matrix_covers_every_moment_the_issue_names():
    from tests.helpers.fault_child import MOMENTS

    tried = {fault.split(":")[0] for attempts in CASES.values() for fault, _ in attempts if fault}
    assert tried == set(MOMENTS)
