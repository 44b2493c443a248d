"""Sweeps through the launchers, a failing job that does not stop the others, sweep status and aggregation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from ics_study.analysis.aggregate import aggregate
from ics_study.analysis.sweeps import jobs
from tests.conftest import TINY, run_cli

GRID = ["model=vgg,vgg_bn", "seed=0,1"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["submitit_local", "local_parallel"])
def test_a_2x2_sweep_through_a_launcher(tmp_path, launcher):
    proc = run_cli("train", "-m", *TINY, "trainer.max_steps=4", *GRID, f"launcher={launcher}",
                   f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = jobs(tmp_path)
    assert len(table) == 4 and set(table.status) == {"completed"}
    assert sorted(zip(table.model, table.seed)) == [("vgg", "0"), ("vgg", "1"), ("vgg_bn", "0"), ("vgg_bn", "1")]


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("failing")
    # lr 1e12 diverges; depth 12 is not a VGG: that job fails with a clear error. The rest must run.
    proc = run_cli("train", "-m", *TINY, "trainer.max_steps=10", "model=vgg", "optim.lr=0.1,1e12", "model.depth=11,12",
                   f"hydra.sweep.dir={root}")
    return root, proc


def test_a_failing_job_does_not_stop_the_others(failing_sweep):
    root, proc = failing_sweep
    assert proc.returncode == 1 and "a job of the sweep failed" in proc.stderr
    table = jobs(root).set_index(["optim.lr", "model.depth"])
    assert table.loc[("0.1", "11"), "status"] == "completed"
    assert table.loc[("1000000000000.0", "11"), "status"] == "diverged"  # Hydra writes 1e12 out
    assert (table.xs("12", level="model.depth").status == "failed").all()
    assert "model.depth=12 is not valid" in table.loc[("0.1", "12"), "error"]


def test_sweep_command_shows_failures(failing_sweep):
    root, _ = failing_sweep
    proc = run_cli("sweep", str(root))
    assert proc.returncode == 1
    assert proc.stdout.count("FAILED !!") == 2 and "diverged" in proc.stdout and "at step" in proc.stdout
    assert "1 completed, 1 diverged, 2 failed of 4 jobs" in proc.stdout


def test_aggregate_matches_the_per_job_tables(failing_sweep, tmp_path):
    root, _ = failing_sweep
    proc = run_cli("aggregate", str(root), "--out", str(tmp_path / "agg"))
    assert proc.returncode == 0, proc.stderr
    agg = pd.read_parquet(tmp_path / "agg.parquet")
    assert {"job", "status", "optim.lr", "model.depth", "metric", "step", "value"} <= set(agg.columns)
    assert agg.equals(aggregate(root))
    for job_dir in root.iterdir():
        if not (job_dir / "summary.json").exists():
            continue
        m = pd.read_parquet(job_dir / "metrics")
        for name in ("train/loss", "test/acc"):
            series = m[m.metric == name].sort_values("step")
            if not len(series):
                continue
            row = agg[(agg.job == job_dir.name) & (agg.metric == name)]
            assert row.value.item() == series.value.iloc[-1] or (row.value.isna().all() and series.value.isna().iloc[-1])
        summary = json.loads((job_dir / "summary.json").read_text())
        row = agg[(agg.job == job_dir.name) & (agg.metric == "summary/train_images_per_s")]
        assert row.value.item() == pytest.approx(summary["train_images_per_s"])


def test_a_sweep_aggregates_while_a_job_has_only_just_started(failing_sweep, tmp_path):
    """A running sweep: the job in progress has its table folders but no part in them yet (found on
    the reference campaign, where aggregate stopped with a traceback). Its rows are its identity and
    status; the finished jobs' rows are unchanged."""
    import shutil

    root, _ = failing_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(root, copy)
    done = next(j for j in copy.iterdir() if (j / "summary.json").exists())
    started = copy / "9_started"
    shutil.copytree(done, started)
    (started / "summary.json").unlink()
    (started / "status.json").write_text(json.dumps({"status": "running", "steps": 0}))
    for table in ("metrics", "activations", "histograms", "probe_channels"):
        for part in (started / table).glob("*.parquet"):
            part.unlink()
    proc = run_cli("aggregate", str(copy), "--out", str(tmp_path / "agg"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    agg = pd.read_parquet(tmp_path / "agg.parquet")
    assert not len(agg[agg.job == "9_started"].dropna(subset=["value"]))
    before = aggregate(root).drop(columns="job")
    after = agg[agg.job != "9_started"].drop(columns="job").reset_index(drop=True)
    assert before.astype(str).sort_values(list(before.columns)).values.tolist() == \
        after.astype(str).sort_values(list(after.columns)).values.tolist()


def test_a_launcher_without_its_plugin_names_the_extra(tmp_path):
    hide = ("import sys; sys.modules['hydra_plugins.hydra_joblib_launcher'] = None; "
            "from ics_study.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", hide, "train", "-m", *TINY, "launcher=local_parallel",
                           f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert "pip install 'ics-study[cluster]'" in proc.stderr.strip().splitlines()[-1]


def test_an_aggregate_that_other_code_wrote_is_rebuilt(failing_sweep, tmp_path):
    """A newer version may derive rows that an older aggregate.parquet lacks (its claims would read
    "not measured"): a file stamped by other code, or by none, is not current; one this code wrote is."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ics_study.analysis.aggregate import FILENAME, STAMP, _current, write

    root, _ = failing_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(root, copy)
    assert run_cli("aggregate", str(copy)).returncode == 0
    file = copy / FILENAME
    table = pd.read_parquet(file)
    assert _current(file) is not None
    table.to_parquet(file, index=False)  # as a version before the stamp wrote it
    assert _current(file) is None
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({**arrow.schema.metadata, STAMP: b"0123456789abcdef"}), file)
    assert _current(file) is None
    write(table, file)
    assert len(_current(file)) == len(table)
