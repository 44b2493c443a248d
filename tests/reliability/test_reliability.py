"""Resume exactly after SIGKILL or SIGTERM, refuse foreign or unsafe checkpoints, rerun a finished run."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from ics_study.errors import UserError
from ics_study.train import checkpoint, train
from tests.conftest import TINY, compose, finished_cli_run, run_cli
from tests.helpers.runs import ARGS, assert_same_run


def start(run, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ics_study.cli", "train", *ARGS, *extra, f"hydra.run.dir={run}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run, proc, timeout=120):
    t0 = time.time()
    while not (run / checkpoint.FILENAME).exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return finished_cli_run(tmp_path_factory, "ref", ARGS)


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_moment_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    run = tmp_path / "run"
    proc = start(run)
    wait_for_checkpoint(run, proc)
    time.sleep(0.3)  # somewhere after the first checkpoint, mid-step, mid-flush or mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((run / "status.json").read_text())["status"] == "running"
    resumed = run_cli("train", *ARGS, f"hydra.run.dir={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["resumed_from"] in (10, 20, 30)
    assert_same_run(run, reference)


@pytest.mark.slow
def test_sigterm_checkpoints_marks_interrupted_and_resumes(tmp_path, reference):
    run = tmp_path / "run"
    proc = start(run)
    wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished before the signal arrived: nothing to test this time
        pytest.skip("the run ended before SIGTERM")
    assert proc.returncode == 130, err
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted"
    state = checkpoint.read(run / checkpoint.FILENAME)
    assert state["step"] == status["steps"]
    resumed = run_cli("train", *ARGS, f"hydra.run.dir={run}")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, reference)


def test_rerunning_a_finished_run_changes_nothing(tmp_path, tiny_cfg):
    first = train(tiny_cfg(), tmp_path)
    mtime = (tmp_path / "metrics").stat().st_mtime_ns
    assert train(tiny_cfg(), tmp_path) == first
    assert (tmp_path / "metrics").stat().st_mtime_ns == mtime


def test_a_finished_run_without_its_checkpoint_is_not_trained_again(tmp_path, tiny_cfg):
    """Published runs (results/reference/runs) keep their tables, not their weights: rerunning their
    sweep returns at once. Another config or a longer run trains as before."""
    first = train(tiny_cfg("trainer.max_steps=6"), tmp_path / "run")
    (tmp_path / "run" / checkpoint.FILENAME).unlink()
    tables = {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("part-*.parquet"))}
    assert train(tiny_cfg("trainer.max_steps=6", "trainer.eval_every=3"), tmp_path / "run") == first  # a free setting
    assert {p: p.read_bytes() for p in sorted((tmp_path / "run").rglob("part-*.parquet"))} == tables
    assert not (tmp_path / "run" / checkpoint.FILENAME).exists()
    assert checkpoint.finished_without(tmp_path / "run", tiny_cfg("trainer.max_steps=6", "seed=1")) is None
    assert checkpoint.finished_without(tmp_path / "run", tiny_cfg("trainer.max_steps=7")) is None
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    assert checkpoint.finished_without(tmp_path / "run", tiny_cfg("trainer.max_steps=6")) is None
    diverging = tiny_cfg("model=vgg", "optim.lr=1e12", "trainer.max_steps=40", "trainer.log_every=4")
    ended = train(diverging, tmp_path / "diverged")
    assert ended["status"] == "diverged" and ended["steps"] < 40
    (tmp_path / "diverged" / checkpoint.FILENAME).unlink(missing_ok=True)
    again = train(diverging, tmp_path / "diverged")  # returns at once: it would only diverge again
    assert json.dumps(again, sort_keys=True) == json.dumps(ended, sort_keys=True)  # (its loss is NaN)


def test_a_checkpoint_from_another_config_is_refused(tmp_path, tiny_cfg):
    train(tiny_cfg("trainer.max_steps=6"), tmp_path)
    with pytest.raises(UserError, match="different config.*model.width"):
        train(tiny_cfg("trainer.max_steps=12", "model.width=0.25"), tmp_path)
    longer = train(tiny_cfg("trainer.max_steps=12"), tmp_path)  # more steps of the same run: allowed
    assert longer["steps"] == 12 and longer["resumed_from"] == 6


def test_an_option_added_after_the_checkpoint_counts_as_its_default(tmp_path, tiny_cfg):
    """Runs made before an option existed stay resumable (the reference campaign met this: a rerun
    after trainer.lock_wait_s was added refused every finished run)."""
    train(tiny_cfg("trainer.max_steps=6"), tmp_path)
    path = tmp_path / checkpoint.FILENAME
    state = checkpoint.read(path)
    saved = json.loads(state["config"])
    del saved["landscape"]["every"]  # as if the checkpoint predated this option
    saved["trainer"]["lock_wait_s"] = 7.0  # and held a setting declared free (not numbers) since
    state["config"] = json.dumps(saved)
    torch.save(state, path)
    assert train(tiny_cfg("trainer.max_steps=12"), tmp_path)["resumed_from"] == 6
    torch.save(state, path)
    changed = 1 + checkpoint.trajectory_config(tiny_cfg())["landscape"]["every"]
    with pytest.raises(UserError, match="different config.*landscape.every"):  # not the default: a difference
        train(tiny_cfg("trainer.max_steps=12", f"landscape.every={changed}"), tmp_path)


def test_a_refused_rerun_leaves_the_finished_run_as_it_was(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", *TINY, "trainer.max_steps=4", f"hydra.run.dir={run}").returncode == 0
    before = {f: (run / f).read_bytes() for f in ("status.json", "summary.json", checkpoint.FILENAME)}
    refused = run_cli("train", *TINY, "trainer.max_steps=4", "model.width=0.25", f"hydra.run.dir={run}")
    assert refused.returncode == 2 and "different config" in refused.stderr
    assert {f: (run / f).read_bytes() for f in before} == before
    # a status.json spoilt by such a refusal in an older version is repaired by a plain rerun
    (run / "status.json").write_text(json.dumps({"status": "failed", "error": "different config"}))
    assert run_cli("train", *TINY, "trainer.max_steps=4", f"hydra.run.dir={run}").returncode == 0
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert (run / "summary.json").read_bytes() == before["summary.json"]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoints_load_weights_only(tmp_path, tiny_cfg):
    marker = tmp_path / "pwned"
    (tmp_path / checkpoint.FILENAME).write_bytes(pickle.dumps({"step": 1, "evil": _Exploit(marker)}))
    with pytest.raises(UserError, match="is damaged \\(it does not load: .*\\); delete it to start afresh"):
        train(tiny_cfg(), tmp_path)
    assert not marker.exists()


def test_resume_path_continues_that_run(tmp_path, tiny_cfg):
    train(tiny_cfg("trainer.max_steps=6"), tmp_path / "a")
    summary = train(compose([*TINY, "trainer.max_steps=12", f"trainer.resume={tmp_path / 'a'}"]), tmp_path / "b")
    assert summary["resumed_from"] == 6
    m = pd.read_parquet(tmp_path / "a" / "metrics")
    assert sorted(m[m.metric == "train/loss"].step) == list(range(1, 13))
    line = run_cli("train", *TINY, f"trainer.resume={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'c'}").stderr
    assert "no checkpoint.pt there" in line


@pytest.mark.slow
def test_a_signal_stops_the_whole_sweep_and_the_same_command_finishes_it(tmp_path):
    """SIGTERM (a scheduler's time limit, `timeout`) or Ctrl-C during a sequential sweep: the running
    job checkpoints, the jobs after it do not start (they would only be killed in turn), the exit
    code says interrupted; rerunning the same command resumes that job and runs the rest."""
    sweep = [*ARGS, "trainer.max_steps=100", "trainer.eval_every=50", "probe.every=50", "ics.enabled=false", "seed=0,1",
             f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.Popen([sys.executable, "-m", "ics_study.cli", "train", "-m", *sweep],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list((tmp_path / "sweep").glob(f"*/{checkpoint.FILENAME}")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < 300
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    if proc.returncode == 0:  # the first job ended before the signal arrived: nothing to test this time
        pytest.skip("the job ended before SIGTERM")
    assert proc.returncode == 130, err[-2000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if (p / ".hydra").exists())
    status = {job.name: json.loads((job / "status.json").read_text()) if (job / "status.json").exists() else None
              for job in jobs}
    first, *rest = sorted(status)
    assert status[first]["status"] == "interrupted" and status[first]["steps"] < 100
    assert all(status[job] is None for job in rest) and "not started" in out + err  # the second job never trained
    again = run_cli("train", "-m", *sweep)
    assert again.returncode == 0, again.stderr[-2000:]
    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["status"] for s in summaries] == ["completed", "completed"] and [s["steps"] for s in summaries] == [100, 100]
    assert summaries[0]["resumed_from"] == status[first]["steps"]
