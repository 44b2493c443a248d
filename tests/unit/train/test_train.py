"""The training loop: reproducible on the CPU, unchanged by probes, divergence reported as a result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ics_study.train import train


def losses(run_dir):
    m = pd.read_parquet(run_dir / "metrics")
    return m[m.metric == "train/loss"].sort_values("step")["value"].to_numpy()


def test_same_seed_same_numbers(tiny_cfg, tmp_path):
    a = train(tiny_cfg("model=vgg_bn_noise"), tmp_path / "a")
    b = train(tiny_cfg("model=vgg_bn_noise"), tmp_path / "b")
    np.testing.assert_array_equal(losses(tmp_path / "a"), losses(tmp_path / "b"))
    assert a["final"] == b["final"]
    c = train(tiny_cfg("model=vgg_bn_noise", "seed=1"), tmp_path / "c")
    assert c["final"]["train_loss"] != a["final"]["train_loss"]


@pytest.mark.parametrize("model", ["vgg", "vgg_bn_noise"])
@pytest.mark.parametrize("probe", ["probe.batch=train", "probe.batch=fixed", "probe.points=[pre_norm,post_relu]"])
def test_probes_never_change_training(tiny_cfg, tmp_path, model, probe):
    train(tiny_cfg(f"model={model}", "probe.enabled=false"), tmp_path / "off")
    train(tiny_cfg(f"model={model}", probe), tmp_path / "on")
    np.testing.assert_array_equal(losses(tmp_path / "off"), losses(tmp_path / "on"))
    assert not (tmp_path / "off" / "activations").exists()
    assert (tmp_path / "on" / "activations").exists()


def test_metrics_table_and_summary(tiny_cfg, tmp_path):
    summary = train(tiny_cfg(), tmp_path)
    m = pd.read_parquet(tmp_path / "metrics")
    assert list(m.columns) == ["step", "metric", "value"]
    for name in ("train/loss", "train/acc"):
        assert m[m.metric == name].step.tolist() == list(range(1, 13))
    assert sorted(m[m.metric == "test/acc"].step) == [6, 12]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["steps"] == 12
    assert on_disk["device"] == "cpu" and " thread" in on_disk["hardware"]  # the machine (tests/unit/train/test_process.py)
    assert on_disk["final"]["test_acc"] == pytest.approx(m[(m.metric == "test/acc") & (m.step == 12)].value.item())
    assert on_disk["final"]["train_loss"] == pytest.approx(losses(tmp_path)[-1], rel=1e-6)
    assert summary["train_images_per_s"] > 0
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "completed"


def test_training_rate_excludes_evaluation_and_checkpoints(tiny_cfg, tmp_path):
    summary = train(tiny_cfg("trainer.checkpoint_every=3"), tmp_path)  # 4 checkpoints, 2 evaluations
    assert summary["checkpoint_time_s"] > 0 and summary["eval_time_s"] > 0
    train_time = summary["wall_time_s"] - summary["eval_time_s"] - summary["checkpoint_time_s"]
    assert train_time > 0
    assert summary["train_images_per_s"] == pytest.approx(12 * 32 / train_time, rel=1e-6)


def test_steady_rate_leaves_out_the_first_steps(tiny_cfg, tmp_path, monkeypatch):
    import time

    import ics_study.train.run as train_module

    build_model = train_module.build_model

    def slow_start(cfg):  # the first 4 training forwards take 0.25 s more, as autotuning or a capture would
        model, calls = build_model(cfg), []

        def hook(module, args):
            if module.training and len(calls) < 4:
                calls.append(1)
                time.sleep(0.25)

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(train_module, "build_model", slow_start)
    summary = train(tiny_cfg("trainer.steady_after=4"), tmp_path / "slow")
    train_time = summary["wall_time_s"] - summary["eval_time_s"] - summary["checkpoint_time_s"]
    assert train_time > 1.0  # the four slow steps are in the whole-run rate ...
    assert summary["steady_images_per_s"] > 8 * 32 / (train_time - 1.0) * 0.999  # ... and not in the steady one
    monkeypatch.undo()
    assert train(tiny_cfg("trainer.steady_after=12"), tmp_path / "short")["steady_images_per_s"] is None  # no steps after


def test_divergence_stops_the_run_with_its_step(tiny_cfg, tmp_path):
    summary = train(tiny_cfg("model=vgg", "optim.lr=1e12", "trainer.max_steps=40", "trainer.log_every=4"), tmp_path)
    assert summary["status"] == "diverged"
    assert summary["diverged_at"] is not None and summary["steps"] < 40
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged"
    assert not np.isfinite(losses(tmp_path)[summary["diverged_at"] - 1])


def test_fixed_batch_probe_leaves_lp_running_statistics_alone(tiny_cfg, tmp_path):
    off = train(tiny_cfg("model=vgg_lp2", "probe.enabled=false"), tmp_path / "off")
    on = train(tiny_cfg("model=vgg_lp2", "probe.batch=fixed"), tmp_path / "on")
    assert on["final"] == off["final"]  # test metrics use the running mean and norm


def test_on_step_is_called_once_per_step_in_order_and_resumes_where_the_run_left_off(tiny_cfg, tmp_path):
    seen = []
    train(tiny_cfg("trainer.max_steps=4", "trainer.checkpoint_every=2"), tmp_path, on_step=seen.append)
    assert seen == [1, 2, 3, 4]
    seen.clear()
    summary = train(tiny_cfg("trainer.max_steps=7", "trainer.checkpoint_every=2"), tmp_path, on_step=seen.append)
    assert summary["resumed_from"] == 4 and seen == [5, 6, 7]


def test_threads_zero_means_every_core_again_after_a_job_that_asked_for_fewer(tiny_cfg, tmp_path):
    """Jobs of a sweep can share a process (Hydra's basic launcher): trainer.threads=1 in one must not
    leave the next job, which asks for every core, on one thread."""
    from ics_study.train.process import ALL_THREADS, configure, pick_device

    cpu = pick_device("cpu")
    try:
        configure(tiny_cfg("trainer.threads=1").trainer, cpu)
        assert torch.get_num_threads() == 1
        configure(tiny_cfg("trainer.threads=0").trainer, cpu)
        assert torch.get_num_threads() == ALL_THREADS
    finally:
        torch.set_num_threads(ALL_THREADS)


def test_the_counter_stream_is_refused_inside_a_cuda_graph(tiny_cfg):
    """Its per-draw key is a host integer: a captured graph would replay one draw's noise forever.
    (No GPU needed: the stream is built, not used.)"""
    from ics_study.errors import UserError
    from ics_study.models.noise_stream import CounterStream
    from ics_study.train.run import noise_generator

    cuda = torch.device("cuda")
    with pytest.raises(UserError, match="model.noise.rng=auto"):
        noise_generator(tiny_cfg("model=vgg_bn_noise", "model.noise.rng=counter"), cuda)
    assert isinstance(noise_generator(tiny_cfg("model=vgg_bn_noise", "model.noise.rng=counter",
                                               "trainer.cuda_graph=off"), cuda), CounterStream)
