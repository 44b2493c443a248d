"""The noisy network's test accuracy in its three readings: what each computes, and that none of them
changes training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ics_study.data import build_data
from ics_study.data.tasks import task_for
from ics_study.models import build_model, set_noise_generator
from ics_study.models.noisy_bn import noisy_layers
from ics_study.probes import Replay
from ics_study.train import checkpoint, train
from ics_study.train.evaluation import NoisyEvaluation
from tests.conftest import TINY, compose


def metrics(run_dir):
    m = pd.read_parquet(run_dir / "metrics")
    return m.assign(metric=m.metric.astype(str)).sort_values(["metric", "step"]).reset_index(drop=True)


def test_the_extra_readings_never_change_training(tmp_path):
    on = train(compose(TINY + ["model=vgg_bn_noise", "eval.noisy_modes_every=6", "eval.recalibration_batches=5"]),
               tmp_path / "on")
    off = train(compose(TINY + ["model=vgg_bn_noise", "eval.noisy_modes=false"]), tmp_path / "off")
    a, b = metrics(tmp_path / "on"), metrics(tmp_path / "off")
    a = a[~a.metric.str.startswith(("test_recalibrated", "test_noise_on"))].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)  # measured at step 6 of 12: the steps after it are unchanged
    wa, wb = (checkpoint.read(d / "checkpoint.pt")["model"] for d in (tmp_path / "on", tmp_path / "off"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # weights and BN running statistics
    assert sorted(metrics(tmp_path / "on").query("metric == 'test_noise_on/acc'").step) == [6, 12]
    for mode in ("recalibrated", "noise_on"):
        assert 0 <= on["final"][f"test_acc_{mode}"] <= 1 and off["final"][f"test_acc_{mode}"] is None


def test_other_networks_get_only_the_plain_reading(tmp_path):
    s = train(compose(TINY + ["model=vgg_bn"]), tmp_path)
    assert s["final"]["test_acc_recalibrated"] is None and s["final"]["test_acc_noise_on"] is None
    assert not metrics(tmp_path).metric.str.startswith("test_").any()


def _setup():
    cfg = compose(TINY + ["model=vgg_bn_noise", "eval.recalibration_batches=7"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    set_noise_generator(model, torch.Generator().manual_seed(1))
    data = build_data(cfg.data, 0, torch.device("cpu"))
    ne = NoisyEvaluation(model, data, task_for(cfg.data), cfg.eval, 0, torch.device("cpu"), "fp32", 32)
    return cfg, model, data, ne


def test_recalibration_averages_clean_batch_statistics():
    """BN's running statistics after recalibration are the plain average of each clean batch's
    statistics (noise off upstream), over the recalibration batches."""
    cfg, model, data, ne = _setup()
    gen = torch.Generator().manual_seed(0 * 1000 + 10)
    idx = [torch.randint(len(data.y_train), (32,), generator=gen) for _ in range(7)]
    seen = []
    bn2 = noisy_layers(model)[1]
    hook = bn2.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    with Replay(model, None).isolated():
        ne._recalibrate()
        got_mean, got_var = bn2.running_mean.clone(), bn2.running_var.clone()
    hook.remove()
    assert len(seen) == 7
    for m in noisy_layers(model):
        m.noise_enabled = False  # the same batches, clean, by hand
    model.train()
    inputs = []
    hook = bn2.register_forward_hook(lambda m, i, o: inputs.append(i[0].detach().clone()))
    with Replay(model, None).isolated(), torch.no_grad():
        for i in idx:
            model(data.normalize(data.x_train[i]))
    hook.remove()
    means = torch.stack([x.mean((0, 2, 3)) for x in inputs])
    variances = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs])  # BN keeps the unbiased variance
    torch.testing.assert_close(got_mean, means.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_var, variances.mean(0), rtol=1e-5, atol=1e-6)
    for a, b in zip(seen, inputs):
        torch.testing.assert_close(a, b)  # recalibration saw clean activations


def test_readings_restore_every_buffer_and_generator():
    cfg, model, data, ne = _setup()
    buffers = [b.clone() for b in model.buffers()]
    training_noise = noisy_layers(model)[0].generator.get_state()
    cpu = torch.get_rng_state()
    out = ne.measure(256)
    assert set(out) == {"recalibrated", "noise_on"}
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert torch.equal(noisy_layers(model)[0].generator.get_state(), training_noise)
    assert torch.equal(torch.get_rng_state(), cpu) and model.training
    assert all(m.noise_enabled for m in noisy_layers(model))
    again = ne.measure(256)  # fresh noise draws: its own stream moved on
    assert again["recalibrated"] != out["recalibrated"] or again["noise_on"] != out["noise_on"]
    assert np.isfinite([v for pair in out.values() for v in pair]).all()


def test_noise_in_evaluation_changes_the_test_readings_and_nothing_of_training(tmp_path):
    """model.noise.in_eval=true: test/* is the noisy network as trained (its own noise, restarted at
    every evaluation: two evaluations at the same weights agree); training, the recalibrated reading
    (noise off) and the weights are those of the default run."""
    from ics_study.train.evaluation import evaluate

    base = TINY + ["model=vgg_bn_noise", "eval.noisy_modes_every=6", "eval.recalibration_batches=5"]
    train(compose(base), tmp_path / "off")
    train(compose(base + ["model.noise.in_eval=true"]), tmp_path / "on")
    a, b = metrics(tmp_path / "on"), metrics(tmp_path / "off")
    same = ~a.metric.str.startswith("test/")
    pd.testing.assert_frame_equal(a[same].reset_index(drop=True), b[~b.metric.str.startswith("test/")].reset_index(drop=True))
    assert not np.allclose(a[~same].value, b[b.metric.str.startswith("test/")].value)  # the noise reached test/*
    cfg = compose(base + ["model.noise.in_eval=true"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    stream = torch.Generator().manual_seed(3)
    set_noise_generator(model, stream)
    data = build_data(cfg.data, cfg.seed, "cpu")
    state = stream.get_state()
    first, second = (evaluate(model, data, task_for(cfg.data), 256, "cpu", "fp32", seed=0) for _ in range(2))
    assert first == second and torch.equal(stream.get_state(), state)  # restarted each time; training's untouched
    assert evaluate(model, data, task_for(cfg.data), 256, "cpu", "fp32", seed=1) != first  # another seed, other noise
