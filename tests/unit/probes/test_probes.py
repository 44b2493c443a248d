"""Activation probes: statistics equal a direct computation, channels are fixed, tables and events read back
(the statistics themselves on hand-made tensors: tests/unit/probes/test_statistics.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ics_study.config import LoggerConfig, ProbeConfig
from ics_study.probes import ActivationProbe
from ics_study.probes.activations import QUANTILES, sample_channels
from ics_study.recording.recorder import Recorder
from ics_study.train.schedule import itstime
from tests.conftest import REPO, TINY, run_cli
from tests.helpers.models import tiny_model


def capture_points(model, probe, point=None):
    """The tensors a probe point (default: the first) produced, by layer, caught by an independent hook."""
    seen, point = {}, point or probe.cfg.points[0]
    for k, block in enumerate(probe.layers):
        probe._point(block, point).register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k + 1, o.detach().clone()))
    return seen


def run_steps(tmp_path, model, probe, steps, x):
    recorder = Recorder(tmp_path, LoggerConfig(tensorboard=False, tables=True))
    for step in steps:
        with probe.observe(step, itstime(step, probe.cfg.every, first=True)):
            model(x)
    probe.flush(recorder)
    recorder.flush(force=True)
    return pd.read_parquet(tmp_path / "activations"), pd.read_parquet(tmp_path / "histograms")


def test_statistics_and_histograms_equal_a_direct_computation(tmp_path):
    model = tiny_model()
    cfg = ProbeConfig(channels_per_layer=3, every=1, hist_bins=16, summary_sample=10**9)
    probe = ActivationProbe(model, cfg, seed=0)
    seen = capture_points(model, probe)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    acts, hists = run_steps(tmp_path, model, probe, [1], x)
    for layer in (1, 5, 9):
        out = seen[layer]
        for ch in probe.channels[layer - 1].tolist():
            v = out[:, ch].double().reshape(-1)
            row = acts[(acts.layer == layer) & (acts.channel == ch)].set_index("stat").value
            assert row["mean"] == pytest.approx(v.mean().item(), abs=1e-5)
            assert row["var"] == pytest.approx(v.var(unbiased=False).item(), rel=1e-4, abs=1e-6)
            assert row["min"] == pytest.approx(v.min().item(), abs=1e-5)
            assert row["max"] == pytest.approx(v.max().item(), abs=1e-5)
            h = hists[(hists.layer == layer) & (hists.channel == ch)].iloc[0]
            edges = np.asarray(h.bin_edges, dtype=np.float64)  # the channel's own range, 16 equal bins
            np.testing.assert_allclose(edges, np.linspace(v.min().item(), v.max().item(), 17), rtol=1e-5, atol=1e-6)
            expected, _ = np.histogram(v.float().numpy(), bins=edges)  # numpy: last bin closed, like ours
            np.testing.assert_array_equal(np.asarray(h.counts), expected)
            assert np.asarray(h.counts).sum() == v.numel() and h.nonfinite == 0  # N*H*W
        flat = out.double().reshape(-1)
        layer_rows = acts[(acts.layer == layer) & (acts.channel == -1)].set_index("stat").value
        assert layer_rows["layer_mean"] == pytest.approx(flat.mean().item(), abs=1e-5)
        assert layer_rows["layer_std"] == pytest.approx(flat.std().item(), rel=1e-4)
        assert layer_rows["layer_frac_nonpos"] == pytest.approx((flat <= 0).double().mean().item())
        # summary_sample exceeds the layer: the quantiles are over every value
        for q in QUANTILES:
            assert layer_rows[f"layer_q{round(q * 100):02d}"] == pytest.approx(
                torch.quantile(flat.float(), q).item(), abs=1e-4)


def test_histograms_only_every_n_steps_moments_every_step(tmp_path):
    model = tiny_model()
    probe = ActivationProbe(model, ProbeConfig(channels_per_layer=2, every=3), seed=0)
    acts, hists = run_steps(tmp_path, model, probe, range(1, 8), torch.randn(8, 3, 32, 32))
    assert sorted(acts[acts.stat == "mean"].step.unique()) == list(range(1, 8))
    assert sorted(hists.step.unique()) == [1, 3, 6]
    assert sorted(acts[acts.stat == "layer_std"].step.unique()) == [1, 3, 6]
    # the same channels at every step
    per_step = acts[acts.stat == "mean"].groupby("step").apply(lambda d: tuple(zip(d.layer, d.channel)))
    assert per_step.nunique() == 1


def test_same_seed_same_channels_in_every_variant():
    picks = {norm: ActivationProbe(tiny_model(norm), ProbeConfig(), seed=7).channels for norm in
             ("none", "batch", "noisy_batch")}
    for norm in ("batch", "noisy_batch"):
        assert all(torch.equal(a, b) for a, b in zip(picks["none"], picks[norm]))
    other = ActivationProbe(tiny_model(), ProbeConfig(), seed=8).channels
    assert not all(torch.equal(a, b) for a, b in zip(picks["none"], other))
    assert [len(c) for c in sample_channels([8, 3], 4, 0)] == [4, 3]


def test_probes_record_nothing_outside_the_observed_forward():
    model = tiny_model()
    probe = ActivationProbe(model, ProbeConfig(), seed=0)
    model(torch.randn(4, 3, 32, 32))
    assert probe.calls == 0
    with probe.observe(1, True):
        model(torch.randn(4, 3, 32, 32))
    assert probe.calls == len(probe.layers)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["batch", "noisy_batch"])
def test_hooks_fire_under_torch_compile_without_recompiling_every_step(norm):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_model(norm)
    probe = ActivationProbe(model, ProbeConfig(every=2), seed=0)  # hooks registered before compiling
    x = torch.randn(4, 3, 32, 32)
    probe.prepare(model, x)
    compiled = torch.compile(model, dynamic=False)
    graphs = []
    for step in range(1, 11):
        with probe.observe(step, itstime(step, probe.cfg.every, first=True)):
            compiled(x)
        graphs.append(counters["stats"]["unique_graphs"])
    assert probe.calls == 10 * len(probe.layers)
    assert len(probe._hists) == 6  # steps 1, 2, 4, 6, 8, 10
    # compiled once per kind of step (plain, histogram); a counter bumped in a hook recompiled every
    # step, and a noisy BN's graph break once recompiled the hook after it for every layer
    assert graphs[3] == graphs[-1], graphs
    assert counters["frames"]["ok"] == counters["frames"]["total"], dict(counters["frames"])  # none gave up
    if norm == "batch":
        assert graphs[-1] <= 3, graphs


@pytest.mark.slow
def test_a_prepared_probe_compiles_into_one_graph_and_prepare_changes_nothing():
    import torch._dynamo

    x = torch.randn(4, 3, 32, 32)
    model = tiny_model("batch")
    probe = ActivationProbe(model, ProbeConfig(every=1), seed=0)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    probe.prepare(model, x)  # the one-off set-up: eval mode, no running statistics touched
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items()) and model.training
    with probe.observe(1, True):
        explained = torch._dynamo.explain(model)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0  # the set-up broke it per layer
    # same records as a probe that sets itself up in its first training forward
    fresh_model = tiny_model("batch")
    fresh = ActivationProbe(fresh_model, ProbeConfig(every=1), seed=0)
    with probe.observe(2, True):
        model(x)
    with fresh.observe(2, True):
        fresh_model(x)
    assert all(torch.equal(a, b) for a, b in zip(probe._sample_idx, fresh._sample_idx))
    torch.testing.assert_close(probe._full[-1], fresh._full[-1])


def test_cli_run_writes_probe_tables_and_tensorboard_histograms(tmp_path):
    proc = run_cli("train", *TINY, "model=vgg_bn_noise", "probe.channels_per_layer=4", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    acts = pd.read_parquet(tmp_path / "activations")
    assert list(acts.columns) == ["step", "point", "layer", "channel", "stat", "value"]
    assert set(acts.layer) == set(range(1, 10))  # 8 convs + the output layer of VGG-11
    assert len(acts[acts.stat == "mean"]) == 12 * 9 * 4
    hists = pd.read_parquet(tmp_path / "histograms")
    assert list(hists.columns) == ["step", "point", "layer", "channel", "bin_edges", "counts", "nonfinite"]
    assert sorted(hists.step.unique()) == [1, 4, 8, 12]
    assert (hists.counts.map(np.sum) == 32 * 32 * 32).loc[hists.layer == 1].all()  # N*H*W at layer #1
    chans = pd.read_parquet(tmp_path / "probe_channels")
    assert len(chans) == 9 * 4 and set(chans["rank"]) == {0, 1, 2, 3}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    hist_tags = events.Tags()["histograms"]
    assert len(hist_tags) == 9 * 4
    first = hist_tags[0]
    assert [e.step for e in events.Histograms(first)] == [1, 4, 8, 12]
    assert events.Histograms(first)[0].histogram_value.num == 32 * 32 * 32
    # the TensorBoard histogram is the table's, without its empty end bins
    layer, ch = (int(part.lstrip("layerch")) for part in first.split("/")[1:])  # activations/layerKK/chCCC
    row = hists[(hists.layer == layer) & (hists.channel == ch) & (hists.step == 1)].iloc[0]
    counts, edges = np.asarray(row.counts), np.asarray(row.bin_edges)
    assert (hists.bin_edges.map(len) == 65).all() and hists.bin_edges.map(lambda e: e[0] < e[-1]).all()
    filled = np.flatnonzero(counts)
    tb = events.Histograms(first)[0].histogram_value
    np.testing.assert_array_equal(tb.bucket, counts[filled[0] : filled[-1] + 1])
    np.testing.assert_allclose(tb.bucket_limit, edges[filled[0] + 1 : filled[-1] + 2], rtol=1e-6)
    assert tb.min == pytest.approx(edges[filled[0]])
    assert "moments/layer01_rank0/mean" in events.Tags()["scalars"]


def test_a_second_point_reads_back_through_pandas_and_tensorboard_under_its_name(tmp_path):
    """probe.points=[pre_relu,pre_norm] from the command line: both points' rows in the tables, the
    second point's scalars and histograms in TensorBoard under its own prefix."""
    proc = run_cli("train", *TINY, "model=vgg_bn", "probe.channels_per_layer=2", "probe.points=[pre_relu,pre_norm]",
                   f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    acts = pd.read_parquet(tmp_path / "activations")
    assert set(acts.point.astype(str)) == {"pre_relu", "pre_norm"}
    assert len(acts[(acts.stat == "mean") & (acts.point == "pre_norm")]) == 12 * 9 * 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    assert {"moments/layer03_rank0/mean", "pre_norm/moments/layer03_rank0/mean"} <= set(events.Tags()["scalars"])
    hist_tags = events.Tags()["histograms"]
    assert len(hist_tags) == 2 * 9 * 2 and sum(t.startswith("pre_norm/activations/") for t in hist_tags) == 9 * 2
    bn = acts[(acts.point == "pre_relu") & (acts.stat == "mean") & (acts.layer == 3)].value
    conv = acts[(acts.point == "pre_norm") & (acts.stat == "mean") & (acts.layer == 3)].value
    assert bn.abs().max() < conv.abs().max()  # BN's output mean is beta (near 0 this early); the conv's is not


def test_pre_norm_sees_the_conv_output_where_bn_does_not_pin_the_moments(tmp_path):
    """Two points in one pass: at pre_relu a BN channel's batch mean is beta (0) and its variance
    gamma^2 (1) by construction; at pre_norm the probe records the conv output, whose moments BN has
    not touched. Each row says its point, the same channels are watched at both, and the histograms
    and TensorBoard tags of the second point carry its name."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    model = tiny_model()
    probe = ActivationProbe(model, ProbeConfig(channels_per_layer=3, every=1, points=["pre_relu", "pre_norm"]), seed=0)
    seen = {p: capture_points(model, probe, p) for p in ("pre_relu", "pre_norm")}
    acts, hists = run_steps(tmp_path, model, probe, [1], x)
    assert probe._point(probe.layers[0], "pre_relu") is model.blocks[0].norm
    assert probe._point(probe.layers[0], "pre_norm") is model.blocks[0].layer
    assert set(acts.point.astype(str)) == set(hists.point.astype(str)) == {"pre_relu", "pre_norm"}
    moments = {}
    for point in ("pre_relu", "pre_norm"):
        at = acts[acts.point.astype(str) == point]
        for layer in (1, 5):
            for ch in probe.channels[layer - 1].tolist():
                row = at[(at.layer == layer) & (at.channel == ch)].set_index("stat").value
                v = seen[point][layer][:, ch].double()
                assert row["mean"] == pytest.approx(v.mean().item(), abs=1e-5)
                assert row["var"] == pytest.approx(v.var(unbiased=False).item(), rel=1e-4, abs=1e-6)
        moments[point] = at[(at.channel >= 0) & (at.layer < len(probe.layers))].pivot_table(
            index=["layer", "channel"], columns="stat", values="value")
    pinned, free = moments["pre_relu"], moments["pre_norm"]
    assert list(pinned.index) == list(free.index)  # the same units at both points
    assert np.allclose(pinned["mean"], 0, atol=1e-4) and np.allclose(pinned["var"], 1, atol=1e-3)
    assert not np.allclose(free["mean"], 0, atol=1e-2) and not np.allclose(free["var"], 1, atol=1e-2)
    layout = probe.tensorboard_layout()
    assert layout["sampled activation at pre_norm: mean"]["layer #2"] == ["Multiline", ["pre_norm/moments/layer02_rank0/mean"]]
    assert layout["sampled activation: mean"]["layer #2"] == ["Multiline", ["moments/layer02_rank0/mean"]]


def test_a_single_position_unit_is_one_channel_at_one_place_over_the_batch(tmp_path):
    """probe.unit=position: each sampled channel is watched at one (h, w) drawn from the seed, its
    statistics over the batch's N values; the same positions at every point and in every variant,
    written to probe_channels."""
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cfg = ProbeConfig(channels_per_layer=3, every=1, unit="position", points=["pre_relu", "pre_norm"])
    model = tiny_model()
    probe = ActivationProbe(model, cfg, seed=0)
    seen = {p: capture_points(model, probe, p) for p in cfg.points}
    acts, hists = run_steps(tmp_path, model, probe, [1], x)
    chans = pd.read_parquet(tmp_path / "probe_channels")
    for point in cfg.points:
        at, h_at = acts[acts.point == point], hists[hists.point == point]
        for layer in (1, 5):
            for row in chans[chans.layer == layer].itertuples():
                assert 0 <= row.h < seen[point][layer].shape[2] and 0 <= row.w < seen[point][layer].shape[3]
                v = seen[point][layer][:, row.channel, row.h, row.w].double()  # N values
                stats = at[(at.layer == layer) & (at.channel == row.channel)].set_index("stat").value
                assert stats["mean"] == pytest.approx(v.mean().item(), abs=1e-5)
                assert stats["var"] == pytest.approx(v.var(unbiased=False).item(), rel=1e-4, abs=1e-6)
                hist = h_at[(h_at.layer == layer) & (h_at.channel == row.channel)].iloc[0]
                assert np.asarray(hist.counts).sum() == 16  # the batch, not N*H*W
    assert (chans[chans.layer == 9].h == -1).all()  # the output layer is linear: its units are already single
    standard = tiny_model("none")
    twin = ActivationProbe(standard, cfg, seed=0)
    twin.prepare(standard, x)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(probe.positions[:8], twin.positions[:8]))  # the same units in every variant
    plain_model = tiny_model()
    run_steps(tmp_path / "plain", plain_model, ActivationProbe(plain_model, ProbeConfig(), seed=0), [1], x)
    default = pd.read_parquet(tmp_path / "plain" / "probe_channels")
    assert (default.h == -1).all() and (default.w == -1).all()  # whole channels by default


def test_the_record_layout_round_trips_and_has_one_home():
    """activation_rows.py packs a flush's records into one tensor and unpacks them on the host; no
    other module knows the layout (a second copy would drift from it)."""
    from ics_study.probes.activation_rows import LAYER_STATS, ActivationRows, full_record

    cfg = ProbeConfig(points=["pre_relu", "pre_norm"], hist_bins=4)
    channels = [torch.tensor([0, 2, 5]), torch.tensor([1, 3])]
    rows = ActivationRows([(p, k) for p in cfg.points for k in range(2)], channels, cfg)
    g = torch.Generator().manual_seed(0)
    sizes = [len(c) for c in rows.channels]  # 3, 2, 3, 2 channels at the four sites
    moments, fulls, hists = [], [], []
    for step in range(3):  # three recorded steps, the first and last full
        current = [(torch.rand(c, generator=g), torch.rand(c, generator=g)) for c in sizes]
        full = [(full_record(torch.rand(3, generator=g), torch.rand(len(LAYER_STATS) - 3, generator=g),
                             torch.rand(c, 2, generator=g)), torch.rand(c, 2 * cfg.hist_bins + 2, generator=g))
                for c in sizes] if step != 1 else None
        m, f, h = rows.stack(current, full)
        moments.append(m)
        if f is not None:
            fulls.append(f)
            hists.append(h)
    got_m, got_f, got_h = rows.unpack(rows.pack(moments, fulls, hists).numpy(), 3, 2)
    assert np.allclose(got_m, torch.stack(moments).double().numpy())
    assert [f.shape for f in got_f] == [(2, len(LAYER_STATS) + 2 * c) for c in sizes]
    assert np.allclose(np.concatenate(got_f, 1), torch.stack(fulls).double().numpy())
    assert np.allclose(got_h, torch.stack(hists).double().numpy())
    with pytest.raises(RuntimeError, match="read back"):
        rows.unpack(np.zeros(5), 3, 2)
    package = REPO / "ics_study"
    elsewhere = [str(p.relative_to(package)) for p in package.rglob("*.py") if p.name != "activation_rows.py"
                 and ("LAYER_STATS" in p.read_text() or "hist_bins + 2" in p.read_text())]
    assert not elsewhere, f"the record layout is read outside activation_rows.py: {elsewhere}"
