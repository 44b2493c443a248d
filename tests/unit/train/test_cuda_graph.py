"""The CUDA-graph step (``trainer.cuda_graph``): when it is used, and that it trains exactly as eager.

The CPU tests check the switch and the probe's capture/replay bookkeeping; the CUDA tests (skipped
without a GPU; ``scripts/gpu_check.sh`` runs them) train the same run graphed and eager.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ics_study.config import LoggerConfig, ProbeConfig
from ics_study.errors import UserError
from ics_study.probes import ActivationProbe
from ics_study.recording.recorder import Recorder
from ics_study.train import train
from ics_study.train.graphed_step import optimizer_ready, wanted
from tests.conftest import TINY, compose, run_cli
from tests.helpers.graph import ReplayByRerun
from tests.helpers.models import tiny_model

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run scripts/gpu_check.sh)")


def test_graph_is_used_on_cuda_by_default_and_never_on_cpu():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert wanted("auto", gpu, None) and wanted("on", gpu, "default") and wanted("True", gpu, None)
    assert not wanted("auto", cpu, None) and not wanted("on", cpu, None)
    assert not wanted("off", gpu, None) and not wanted("False", gpu, None)
    assert not wanted("auto", gpu, "reduce-overhead") and not wanted("auto", gpu, "default")  # compiled: opt-in


def test_bad_cuda_graph_value_is_one_clear_error(tiny_cfg):
    with pytest.raises(UserError, match="trainer.cuda_graph"):
        train(tiny_cfg("trainer.cuda_graph=sometimes"), "/nonexistent")


def test_optimizer_is_ready_to_capture_only_once_momentum_buffers_exist():
    p = torch.nn.Parameter(torch.ones(3))
    assert optimizer_ready(torch.optim.SGD([p], lr=0.1))  # plain SGD keeps no state
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    assert not optimizer_ready(opt)
    p.grad = torch.ones(3)
    opt.step()
    assert optimizer_ready(opt)


def test_probe_capture_and_replay_record_what_an_observed_forward_records(tmp_path):
    """The bookkeeping a graph relies on: capture() keeps one step's records, replayed() copies them;
    the plain and the histogram/summary captures are kept apart (two graphs)."""
    model, x = tiny_model("noisy_batch"), torch.randn(8, 3, 32, 32)
    probe = ActivationProbe(model, ProbeConfig(channels_per_layer=3, every=100), seed=0)
    eager = {}
    for step in (2, 100):  # a plain step and a histogram/summary step
        torch.manual_seed(1)
        with torch.no_grad(), probe.observe(step, step == 100):
            model(x)
        eager[step] = (probe._moments[-1].clone(), probe._full[-1].clone() if step == 100 else None)
    for full in (False, True):
        torch.manual_seed(1)
        with torch.no_grad(), probe.capture(full=full):
            model(x)
    torch.testing.assert_close(probe.captured[False][0], eager[2][0])
    assert probe.captured[False][1] is None and probe.captured[False][2] is None
    torch.testing.assert_close(probe.captured[True][0], eager[100][0])
    torch.testing.assert_close(probe.captured[True][1], eager[100][1])
    assert len(probe._moments) == 2 and len(probe._full) == 1  # capture itself records no step
    probe._moments, probe._full, probe._hists, probe._steps, probe._full_steps = [], [], [], [], []
    probe.replayed(3)
    probe.captured[False][0].mul_(2)  # the next replay overwrites the static tensor; step 3's copy must not change
    probe.replayed(4)
    probe.replayed(200, full=True)
    recorder = Recorder(tmp_path, LoggerConfig(tensorboard=False, tables=True))
    probe.flush(recorder)
    recorder.flush(force=True)
    acts = pd.read_parquet(tmp_path / "activations")
    means = acts[acts.stat == "mean"].pivot_table(index=["layer", "channel"], columns="step", values="value")
    assert list(means.columns) == [3, 4, 200]
    np.testing.assert_allclose(means[3], means[200], rtol=1e-6)
    np.testing.assert_allclose(means[4], 2 * means[3], rtol=1e-6)
    assert set(pd.read_parquet(tmp_path / "histograms").step) == {200}
    assert set(acts[acts.stat == "layer_std"].step) == {200}


def test_on_the_cpu_the_probes_record_on_the_training_stream_and_join_is_a_no_op():
    model, x = tiny_model(), torch.randn(4, 3, 32, 32)
    probe = ActivationProbe(model, ProbeConfig(channels_per_layer=2), seed=0)
    with torch.no_grad(), probe.capture():
        model(x)
    assert probe._side is None and probe._held == []
    probe.join()
    assert probe.captured[False][0].shape == (2 * len(probe.layers), 2)


@cuda
@pytest.mark.parametrize("full", [False, True], ids=["plain", "histogram-summary"])
def test_probes_on_a_side_stream_inside_a_real_cuda_graph_record_what_eager_records(full):
    """capture() on a GPU runs the hooks on a side stream that forks at each layer and joins at
    join(): captured in a graph and replayed, the records equal the eager, one-stream ones."""
    model = tiny_model().cuda().to(memory_format=torch.channels_last)
    probe = ActivationProbe(model, ProbeConfig(channels_per_layer=3, every=100), seed=0)
    x = torch.randn(16, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    step = 100 if full else 2
    with torch.no_grad(), probe.observe(step, full):
        model(x)
    eager = (probe._moments[-1], probe._full[-1] if full else None, probe._hists[-1] if full else None)
    static_x = torch.zeros_like(x)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():  # warm-up on the capture stream, as GraphedStep does
        with probe.capture(full):
            model(static_x)
        probe.join()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream), torch.no_grad():
        with probe.capture(full):
            model(static_x)
        assert probe._side is not None and len(probe._held) == len(probe.layers)
        probe.join()
    assert probe._held == []
    static_x.copy_(x)
    graph.replay()
    probe.replayed(step + 1, full=full)
    torch.cuda.synchronize()
    for got, want in zip((probe._moments[-1], probe._full[-1] if full else None,
                          probe._hists[-1] if full else None), eager):
        if want is not None:
            torch.testing.assert_close(got, want)


MEASURED = ["ics.enabled=true", "ics.every=5", "ics.layers=[2,5]", "landscape.enabled=true", "landscape.every=6"]


# (overrides, replays of the plain graph, replays of the histogram/summary graph) over 14 steps with
# histograms at 1, 4, 8, 12. With measurements, their steps (ICS at 1, 5, 10; landscape at 1, 6, 12)
# stay eager; without, plain SGD captures at step 1 (a histogram step); momentum waits for step 2.
@pytest.mark.parametrize("extra, plain, full", [
    (MEASURED, 7, 2), ([*MEASURED, "optim.momentum=0.9"], 7, 2),
    (["ics.enabled=false", "landscape.enabled=false"], 10, 4),
    (["ics.enabled=false", "landscape.enabled=false", "optim.momentum=0.9"], 10, 3),
    (["ics.enabled=false", "landscape.enabled=false", "trainer.precision=bf16"], 10, 4)],
    ids=["sgd", "momentum", "sgd-probes-only", "momentum-probes-only", "bf16-probes-only"])
def test_the_loop_around_the_graph_trains_exactly_like_eager(tiny_cfg, tmp_path, monkeypatch, extra, plain, full):
    run = ["model=vgg_bn_noise", "trainer.max_steps=14", *extra]
    eager = train(tiny_cfg(*run), tmp_path / "eager")
    monkeypatch.setattr(ReplayByRerun, "runs", {False: 0, True: 0})
    graphed = train(tiny_cfg(*run), tmp_path / "graphed", graphed_step=ReplayByRerun)
    assert graphed["cuda_graph"] and not eager["cuda_graph"]
    assert ReplayByRerun.runs == {False: plain, True: full}
    for table in ("metrics", "activations"):
        a, b = (pd.read_parquet(tmp_path / r / table) for r in ("graphed", "eager"))
        key = ["step", "metric"] if table == "metrics" else ["step", "layer", "channel", "stat"]
        a, b = (t.assign(**{k: t[k].astype(str) for k in key if t[k].dtype.name == "category"}) for t in (a, b))
        a, b = (t.sort_values(key).reset_index(drop=True) for t in (a, b))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    if MEASURED[0] in extra:
        assert {"ics/layer02/l2_diff", "landscape/loss_max"} <= set(pd.read_parquet(tmp_path / "graphed" / "metrics").metric.astype(str))


@pytest.mark.parametrize("model", ["vgg_bn_running", "vgg_ws_gn", "vgg_ln",
                                   "vgg_bn_noise model.noise.redraw_every=3 model.noise.granularity=layer",
                                   # no measurement at step 1: the capture's warm-up sizes the held pair
                                   "vgg_bn_noise model.noise.redraw_every=3 ics.enabled=false landscape.enabled=false"])
def test_the_normalisers_and_noise_options_beyond_the_paper_take_the_graphed_path(tiny_cfg, tmp_path, monkeypatch, model):
    """What the graph replays includes their state (running statistics read in training, a held noise
    pair and its age): the graphed loop trains exactly as eager, measurements on."""
    model, *extra = model.split()
    run = [f"model={model}", "trainer.max_steps=14", *MEASURED, *extra]
    train(tiny_cfg(*run), tmp_path / "eager")
    monkeypatch.setattr(ReplayByRerun, "runs", {False: 0, True: 0})
    graphed = train(tiny_cfg(*run), tmp_path / "graphed", graphed_step=ReplayByRerun)
    assert graphed["cuda_graph"] and ReplayByRerun.runs[False] > 0
    a, b = (pd.read_parquet(tmp_path / r / "metrics").sort_values(["step", "metric"]).reset_index(drop=True)
            for r in ("graphed", "eager"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slow
def test_a_compiled_model_inside_the_graphed_step_trains_like_compiled_eager(tiny_cfg, tmp_path, monkeypatch):
    """trainer.compile=true with trainer.cuda_graph=on: the compiled forward and backward are what the
    graph captures (compiled during the warm-up, never during capture)."""
    run = ["model=vgg_bn_noise", "trainer.max_steps=14", "trainer.compile=true"]
    eager = train(tiny_cfg(*run), tmp_path / "eager")
    monkeypatch.setattr(ReplayByRerun, "runs", {False: 0, True: 0})
    graphed = train(tiny_cfg(*run), tmp_path / "graphed", graphed_step=ReplayByRerun)
    assert graphed["cuda_graph"] and ReplayByRerun.runs == {False: 10, True: 4}
    a, b = (pd.read_parquet(tmp_path / r / "activations").sort_values(["step", "layer", "channel", "stat"])
            for r in ("graphed", "eager"))
    assert graphed["final"] == eager["final"]
    np.testing.assert_array_equal(a.value.to_numpy(), b.value.to_numpy())


# --- on a GPU --------------------------------------------------------------------------------------
# Graphed and eager runs are compared in deterministic mode (trainer.deterministic=true, in fresh
# processes so that cuBLAS gets its fixed workspace): then they must agree to rounding. Without it,
# atomics in cuDNN's backward kernels make even two eager runs drift apart after a few dozen steps.
GPU_RUN = ["trainer.device=cuda", "trainer.max_steps=40", "trainer.log_every=7", "probe.every=10",
           "model=vgg_bn_noise", "ics.enabled=true", "ics.every=15", "ics.layers=[2,5]",
           "landscape.enabled=true", "landscape.every=20"]


def _args(*extra: str) -> list[str]:
    """TINY with the given overrides replacing its own values for the same keys."""
    keys = {e.split("=")[0] for e in extra}
    return [a for a in TINY if a.split("=")[0] not in keys] + list(extra)


def _deterministic_run(run_dir, *extra: str) -> dict:
    out = run_cli("train", *_args(*GPU_RUN, "trainer.deterministic=true", *extra), f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def _series(run, metric):
    m = pd.read_parquet(run / "metrics")
    return m[m.metric == metric].sort_values("step")


@cuda
@pytest.mark.parametrize("extra", [[], ["optim.momentum=0.9"], ["model=vgg_bn_running"], ["model=vgg_gn"],
                                   ["model.noise.redraw_every=3", "model.noise.granularity=position"]],
                         ids=["sgd", "momentum", "bn-running", "groupnorm", "held-noise"])
def test_graphed_training_matches_eager_training(tmp_path, extra):
    runs = {}
    for mode in ("on", "off"):
        summary = _deterministic_run(tmp_path / mode, *extra, f"trainer.cuda_graph={mode}")
        assert summary["status"] == "completed" and summary["cuda_graph"] == (mode == "on")
        runs[mode] = tmp_path / mode
    a, b = (_series(runs[m], "train/loss") for m in ("on", "off"))
    assert list(a.step) == list(range(1, 41))
    # same kernels, same noise (the generator is registered with the graph): equal to rounding
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-5, atol=1e-6)
    for metric in ("test/acc", "ics/layer02/l2_diff", "landscape/loss_max"):
        sa, sb = _series(runs["on"], metric), _series(runs["off"], metric)
        assert len(sa) and list(sa.step) == list(sb.step), metric
        np.testing.assert_allclose(sa.value.to_numpy(), sb.value.to_numpy(), rtol=1e-4, atol=1e-6, err_msg=metric)
    acts = [pd.read_parquet(runs[m] / "activations") for m in ("on", "off")]
    joined = acts[0].merge(acts[1], on=["step", "layer", "channel", "stat"], suffixes=("_graph", "_eager"))
    assert len(joined) == len(acts[1]) and set(joined.step) == set(range(1, 41))
    np.testing.assert_allclose(joined.value_graph, joined.value_eager, rtol=1e-4, atol=1e-5)


@cuda
def test_graphed_bf16_training_runs(tmp_path):
    summary = train(compose(_args(*GPU_RUN, "trainer.precision=bf16")), tmp_path)
    assert summary["status"] == "completed" and summary["cuda_graph"]
    assert np.isfinite(_series(tmp_path, "train/loss").value).all()


@cuda
def test_graphed_run_resumes_exactly(tmp_path):
    full = _deterministic_run(tmp_path / "full")
    _deterministic_run(tmp_path / "split", "trainer.max_steps=20")
    resumed = _deterministic_run(tmp_path / "split")
    assert resumed["resumed_from"] == 20 and resumed["cuda_graph"]
    a, b = _series(tmp_path / "full", "train/loss"), _series(tmp_path / "split", "train/loss")
    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), rtol=1e-5, atol=1e-6)
    assert full["final"]["test_acc"] == pytest.approx(resumed["final"]["test_acc"], abs=1e-6)


def test_readback_hands_over_in_order_and_copies_what_it_was_given():
    from ics_study.train.readback import ReadBack

    got = []
    rb = ReadBack(torch.device("cpu"))
    buffer = torch.arange(4.0)
    rb.start(buffer[:2], lambda a: got.append(("first", a.tolist())))
    buffer[:2] = -1  # the buffer is reused at once: the copy must hold the values at start()
    rb.start(buffer, lambda a: got.append(("second", a.tolist())))
    rb.poll()
    assert got == [("first", [0.0, 1.0]), ("second", [-1.0, -1.0, 2.0, 3.0])]
    rb.drain()
    assert len(got) == 2 and not rb.queue


@cuda
def test_readback_on_a_gpu_never_waits_in_poll_and_drain_delivers():
    from ics_study.train.readback import ReadBack

    got = []
    rb = ReadBack(torch.device("cuda"))
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(3):
        x = x @ x / 64  # queue some work so the copy cannot have finished at once
    rb.start(x[0, :4], lambda a: got.append(a.copy()))
    rb.poll()  # may or may not have arrived; must not block or raise
    rb.drain()
    assert len(got) == 1 and np.allclose(got[0], x[0, :4].cpu().numpy())


@pytest.mark.parametrize("probes, side_hint", [("probe.enabled=true", True), ("probe.enabled=false", False)])
def test_a_failed_capture_is_one_line_naming_the_switches_that_avoid_it(tiny_cfg, tmp_path, probes, side_hint):
    class FailingCapture(ReplayByRerun):
        def capture(self, x, y):
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    with pytest.raises(UserError) as err:
        train(tiny_cfg("trainer.max_steps=3", probes), tmp_path, graphed_step=FailingCapture)
    message = str(err.value)
    assert "\n" not in message and "operation not permitted when stream is capturing" in message
    assert "trainer.cuda_graph=off" in message and ("probe.side_stream=false" in message) == side_hint
