"""The installed command as a user runs it: outputs read back, sweeps, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, run_cli


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ics-study: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_lists_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "train" in proc.stdout
    assert "unknown command" in one_line_error(run_cli("trian"))


def test_train_help_info_and_cfg():
    assert "ics-study train" in run_cli("train", "--help").stdout
    assert "ics_study.configs" in run_cli("train", "--info", "searchpath").stdout
    job = run_cli("train", "model=vgg_bn", "data.root=~/datasets/cifar10", "trainer.max_steps=2000", "--cfg", "job")
    assert job.returncode == 0 and "max_steps: 2000" in job.stdout and "root: ~/datasets/cifar10" in job.stdout


def test_a_cli_run_writes_tables_events_summary_and_config(tmp_path):
    proc = run_cli("train", *TINY, "model=vgg_bn_noise", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 12 and summary["model"] == "vgg_bn_noise"
    metrics = pd.read_parquet(run / "metrics")
    assert set(metrics.metric) == {"train/loss", "train/acc", "test/loss", "test/acc", "test_recalibrated/loss",
                                   "test_recalibrated/acc", "test_noise_on/loss", "test_noise_on/acc"}  # a noisy net
    assert f"run dir: {run}" in proc.stdout and f"watch:   tensorboard --logdir {run} --samples_per_plugin" in proc.stdout
    assert summary["final"]["test_acc"] == pytest.approx(metrics.query("metric == 'test/acc'").sort_values("step").value.iloc[-1])
    assert "norm: noisy_batch" in (run / "config.yaml").read_text()
    assert "${" not in (run / "config.yaml").read_text(), "the saved config is resolved"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/acc", "test/loss", "test/acc"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))
    table_loss = metrics.query("metric == 'train/loss'").sort_values("step").value.to_numpy()
    np.testing.assert_allclose([e.value for e in events.Scalars("train/loss")], table_loss, rtol=1e-6)  # float32 in events
    assert any(t.startswith("final/") for t in tags["scalars"]) or any(t.startswith("final/") for t in tags["tensors"])


def test_multirun_over_the_three_models(tmp_path):
    proc = run_cli("train", "-m", *TINY, "trainer.max_steps=4", "model=vgg,vgg_bn,vgg_bn_noise",
                   f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in tmp_path.iterdir() if (p / "summary.json").exists())
    assert jobs == ["0_vgg_lr0.1_seed0", "1_vgg_bn_lr0.1_seed0", "2_vgg_bn_noise_lr0.1_seed0"]
    for job in jobs:
        assert json.loads((tmp_path / job / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("args, needle", [
    (["model=vgg_bnn"], "vgg_bn, vgg_bn_center"),
    (["optim.lr=abc"], "optim.lr=abc"),
    (["model.dpeth=3"], "dpeth"),
    (["model.depth=12"], "choose one of: 11, 13, 16, 19"),
    (["data.root=/nonexistent/cifar", "data.download=false"], "data.root"),
    (["hydra.run.dir=/proc/ics-study-cannot-write"], "writable folder"),
    (["launcher=slurmm"], "submitit_local"),
    (["experiment=fig9"], "fig1, fig2, fig3"),
    (["trainer.max_steps=-5"], "trainer.max_steps=-5 must be positive"),
    (["data=synthetic", "model.depth=11", "ics.enabled=true", "ics.layers=[5,10]"],
     "ics.layers=[5, 10]: this network has layers #1..#9"),
    (["landscape.enabled=true", "landscape.eta_scales=[]"], "landscape.eta_scales must be a non-empty list"),
])
def test_user_mistakes_get_one_clear_line(tmp_path, args, needle):
    line = one_line_error(run_cli("train", "trainer.max_steps=1", f"hydra.run.dir={tmp_path}/run", *args))
    assert needle in line


def test_diverged_run_exits_3_and_says_so(tmp_path):
    proc = run_cli("train", *TINY, "model=vgg", "optim.lr=1e12", "trainer.max_steps=30", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 3, proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


PRESET_JOBS = {"fig1": 4, "fig2": 4, "fig3": 4, "fig4": 2, "lp_norms": 5, "dln": 10, "paper": 9}  # dln: 5 norms x 2 lrs


@pytest.mark.slow
@pytest.mark.parametrize("preset, jobs", sorted(PRESET_JOBS.items()))
def test_every_sweep_preset_runs_its_grid(tmp_path, preset, jobs):
    tiny = TINY + ["ics.layers=[2,5]"]
    if preset == "dln":
        tiny = [a for a in tiny if not a.startswith(("data", "model.", "ics."))] + ["model.depth=6", "ics.layers=[2,4]"]
    proc = run_cli("train", "-m", f"experiment={preset}", "scale=cpu_small", *tiny, "seed=0", "trainer.max_steps=3",
                   "ics.every=2", "landscape.every=2", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = [p for p in tmp_path.iterdir() if (p / "summary.json").exists()]
    assert len(done) == jobs


def test_the_readmes_dln_words_do_not_diverge(tmp_path):
    """`ics-study train model=dln data=linear_regression` (the README's words) would take the VGG lr 0.1
    on the summed loss and diverge at step 2: it is refused with one line naming experiment=dln."""
    proc = run_cli("train", "model=dln", "data=linear_regression", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "optim.lr=0.1" in line and "experiment=dln" in line and "Traceback" not in proc.stderr
