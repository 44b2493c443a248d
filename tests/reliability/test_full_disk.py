"""A full disk (or any I/O error while writing) is a clean stop: one line naming the file, that the
last checkpoint is intact and how to resume; exit status 4; no temporary file left; and the rerun
after space is freed ends with the tables of an uninterrupted run."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from ics_study.errors import WriteFailed
from ics_study.train import train
from tests.conftest import TINY, compose, finished_cli_run, run_cli

pytestmark = pytest.mark.slow
RUN = [a for a in TINY if not a.startswith(("trainer.max_steps", "trainer.eval_every"))] + [
    "trainer.max_steps=60", "trainer.eval_every=20", "trainer.checkpoint_every=10", "model=vgg_bn_noise"]


def tables(run: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("metrics", "activations", "histograms", "probe_channels"):
        df = pd.read_parquet(run / name)
        for col in df.columns:
            if isinstance(df[col].dtype, pd.CategoricalDtype):
                df[col] = df[col].astype(str)
            elif df[col].dtype == object:
                df[col] = df[col].map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)
        out[name] = df.sort_values([c for c in ("step", "metric", "layer", "channel", "stat", "rank") if c in df]).reset_index(drop=True)
    return out


def assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = tables(a), tables(b)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], obj=name)


def no_temporary_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*.tmp")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return finished_cli_run(tmp_path_factory, "whole", RUN)


def test_a_full_tmpfs_stops_cleanly_and_resumes(tmp_path, uninterrupted):
    fs = tmp_path / "fs"
    fs.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(fs)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root); test_injected_write_faults covers the same paths")
    try:
        run = fs / "run"
        proc = run_cli("train", *RUN, f"hydra.run.dir={run}")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 4, proc.stderr
        assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
        assert len(lines) == 1 and lines[0].startswith("ics-study: error: writing "), proc.stderr
        assert "No space left on device" in lines[0] and "is intact" in lines[0] and "rerun the same command" in lines[0]
        assert no_temporary_files(run) == []
        status = json.loads((run / "status.json").read_text())
        assert status["status"] in ("failed", "running")  # "failed" where the disk still took it
        if status["status"] == "failed":
            assert "No space left" in status["error"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)  # space freed
        again = run_cli("train", *RUN, f"hydra.run.dir={run}")
        assert again.returncode == 0, again.stderr
        assert json.loads((run / "summary.json").read_text())["steps"] == 60
        assert_same_tables(run, uninterrupted)
        assert no_temporary_files(run) == []
    finally:
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)


def _nth_call_fails(n: int, real, when=lambda *a, **k: True):
    calls = {"n": 0}

    def fake(*args, **kwargs):
        if when(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("where", ["table part", "checkpoint", "event file", "summary"])
def test_injected_write_faults(where, tmp_path, monkeypatch, uninterrupted):
    import pyarrow.parquet as pq
    from tensorboard.summary.writer import record_writer

    patches = {
        "table part": (pq, "write_table", _nth_call_fails(3, pq.write_table)),
        "checkpoint": (Path, "write_bytes", _nth_call_fails(2, Path.write_bytes)),
        "event file": (record_writer.RecordWriter, "write", _nth_call_fails(40, record_writer.RecordWriter.write)),
        "summary": (Path, "write_text", _nth_call_fails(1, Path.write_text, lambda self, *a, **k: "summary" in self.name)),
    }
    target, name, fake = patches[where]
    run = tmp_path / "run"
    cfg = compose(RUN)
    with monkeypatch.context() as m:
        m.setattr(target, name, fake)
        with pytest.raises(WriteFailed) as failed:
            train(cfg, run)
    expected = {"table part": "part-", "checkpoint": "checkpoint.pt", "event file": "events.out.tfevents",
                "summary": "summary.json"}[where]
    assert expected in failed.value.path and "No space left" in str(failed.value)
    assert no_temporary_files(run) == []
    assert not (run / "summary.json").exists()
    summary = train(cfg, run)  # space freed: the same call resumes
    assert summary["status"] == "completed" and summary["steps"] == 60
    assert_same_tables(run, uninterrupted)
