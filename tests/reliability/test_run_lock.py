"""One writer per run dir: a second process is refused at once with one line naming the holder and
writes nothing of the run; a SIGKILLed holder leaves no lock behind, so the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from ics_study.train.run_lock import RunLock, RunLocked
from tests.conftest import TINY

pytestmark = pytest.mark.slow
LONG = [a for a in TINY if not a.startswith(("trainer.max_steps", "trainer.eval_every"))] + [
    "trainer.max_steps=300", "trainer.eval_every=100", "trainer.checkpoint_every=20", "model=vgg_bn"]


def start(run_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "ics_study.cli", "train", *LONG, *extra, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("timed out")


def steps_of(run_dir):
    m = pd.read_parquet(run_dir / "metrics")
    return m[m.metric == "train/loss"].step.tolist()


def test_lock_waits_a_bounded_time_then_names_the_holder(tmp_path):
    with RunLock(tmp_path):
        t0 = time.monotonic()
        with pytest.raises(RunLocked, match=f"in use by another process \\(pid {os.getpid()} on {socket.gethostname()}"):
            with RunLock(tmp_path, wait_s=0.6, poll_s=0.1):
                pass
        assert time.monotonic() - t0 >= 0.6
    with RunLock(tmp_path):  # released: free again
        pass


def test_a_second_process_on_a_running_dir_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    first = start(run)
    try:
        wait_for(lambda: (run / "checkpoint.pt").exists())  # the first is training and has written
        status_before = (run / "status.json").read_text()
        second = start(run)
        out, err = second.communicate(timeout=600)
        assert second.returncode == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("ics-study: error: the run dir") and "Traceback" not in err
        assert f"pid {first.pid} on {socket.gethostname()}" in lines[0] and "hydra.run.dir" in lines[0]
        if first.poll() is None:  # still running: the refused process left its status alone
            assert json.loads((run / "status.json").read_text())["status"] == json.loads(status_before)["status"]
    finally:
        first.communicate(timeout=900)
    assert first.returncode == 0
    assert steps_of(run) == list(range(1, 301))  # one writer: no duplicated rows (two writers duplicated them)


def test_a_sigkilled_holder_leaves_no_lock_and_the_rerun_resumes(tmp_path):
    run = tmp_path / "run"
    first = start(run)
    wait_for(lambda: (run / "checkpoint.pt").exists())
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert (run / ".lock").exists()  # the file stays; the kernel dropped the lock with the process
    again = start(run)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    assert steps_of(run) == list(range(1, 301))
