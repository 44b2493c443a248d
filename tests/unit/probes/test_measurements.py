"""The paper's measurements: ICS (Definition 2.1), the loss landscape, l_p norms, the deep linear net."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ics_study.config import IcsConfig, LandscapeConfig, LpConfig, ModelConfig
from ics_study.models import build_model
from ics_study.models.lp_norm import LpNorm
from ics_study.probes import ICSProbe, LandscapeProbe, Replay
from ics_study.probes.landscape import eta_grid
from ics_study.train import train


def test_ics_matches_a_hand_built_second_pass():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="t", arch="dln", depth=4, features=3, norm="none")).double()
    x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    lr = 0.05
    W = [model.weight_of(k).detach().clone() for k in range(1, 5)]

    def loss_with(ws):  # the network written out by hand: x W1^T W2^T W3^T W4^T
        h = x
        for w in ws:
            h = h @ w.T
        return 0.5 * (h - y).square().sum()

    Ws = [w.clone().requires_grad_() for w in W]
    G = torch.autograd.grad(loss_with(Ws), Ws)
    W_next = [w - lr * g for w, g in zip(W, G)]  # plain SGD: W^(t+1) = W - lr G
    expected = {}
    for i in (2, 3):
        mixed = [(W_next[j] if j < i - 1 else W[j]).clone().requires_grad_() for j in range(4)]
        g_shift = torch.autograd.grad(loss_with(mixed), mixed[i - 1])[0]
        expected[i] = ((G[i - 1] - g_shift).norm(), torch.nn.functional.cosine_similarity(
            G[i - 1].flatten(), g_shift.flatten(), dim=0))

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    closure = lambda: 0.5 * (model(x) - y).square().sum()  # noqa: E731
    closure().backward()
    out = ICSProbe(IcsConfig(enabled=True, layers=[2, 3])).step(model, optimizer, closure, Replay(model, None))
    for i in (2, 3):
        assert out[f"ics/layer{i:02d}/l2_diff"].item() == pytest.approx(expected[i][0].item(), rel=1e-10)
        assert out[f"ics/layer{i:02d}/cosine"].item() == pytest.approx(expected[i][1].item(), rel=1e-10)
    assert expected[2][0] > 0  # the measure is not trivially zero
    for k in range(1, 5):  # the model holds W^(t+1) afterwards: the step was taken once
        torch.testing.assert_close(model.weight_of(k).detach(), W_next[k - 1])


class Quadratic(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, _):
        return self.w


def test_landscape_beta_smoothness_on_a_quadratic():
    torch.manual_seed(0)
    q = torch.randn(6, 6, dtype=torch.float64)
    H = q @ q.T + torch.eye(6, dtype=torch.float64)
    model = Quadratic(torch.randn(6, dtype=torch.float64))
    closure = lambda: 0.5 * model.w @ H @ model.w  # noqa: E731
    closure().backward()
    g = model.w.grad.detach().clone()
    w0 = model.w.detach().clone()
    lr = 0.01
    probe = LandscapeProbe(LandscapeConfig(enabled=True, eta_scales=[0.5, 1, 2, 4]), lr)
    out = probe.measure(model, closure, Replay(model, None))
    # grad L(w) - grad L(w - eta g) = eta H g, so the ratio is ||H g|| / ||g|| for every eta
    assert out["landscape/beta_smoothness"].item() == pytest.approx(((H @ g).norm() / g.norm()).item(), rel=1e-10)
    assert out["landscape/gradpred_max"].item() == pytest.approx((4 * lr * H @ g).norm().item(), rel=1e-10)
    assert out["landscape/gradpred_min"].item() == pytest.approx((0.5 * lr * H @ g).norm().item(), rel=1e-10)
    losses = [0.5 * (w0 - e * g) @ H @ (w0 - e * g) for e in (0.005, 0.01, 0.02, 0.04)]
    assert out["landscape/loss_min"].item() == pytest.approx(min(losses).item(), rel=1e-10)
    assert out["landscape/loss_max"].item() == pytest.approx(max(losses).item(), rel=1e-10)
    torch.testing.assert_close(model.w.detach(), w0)  # weights restored
    torch.testing.assert_close(model.w.grad, g)  # gradient untouched


def test_eta_grid_from_list_or_range():
    assert eta_grid(LandscapeConfig(eta_scales=[0.5, 4]), 0.1) == pytest.approx([0.05, 0.4])
    grid = eta_grid(LandscapeConfig(eta_range=[0.01, 30], eta_points=5), 1e-6)
    assert grid[0] == pytest.approx(1e-8) and grid[-1] == pytest.approx(3e-5) and len(grid) == 5


@pytest.mark.parametrize("model", ["vgg", "vgg_bn_noise", "vgg_bn_running", "vgg_ws_gn",
                                   "vgg_bn_noise model.noise.redraw_every=3 model.noise.granularity=position"])
def test_measurements_leave_training_unchanged(tiny_cfg, tmp_path, model):
    """ICS, the landscape and the curvature probe. Also for what holds state that the training forward
    reads: running statistics used in training, a noise pair held over steps (Replay.rewind puts both
    back for each measuring pass)."""
    model, *extra = model.split()
    train(tiny_cfg(f"model={model}", *extra), tmp_path / "off")
    train(tiny_cfg(f"model={model}", *extra, "ics.enabled=true", "ics.every=3", "ics.layers=[2,5]", "landscape.enabled=true",
                   "landscape.every=4", "sharpness.enabled=true", "sharpness.every=5", "sharpness.iterations=4",
                   "sharpness.trace_samples=2"), tmp_path / "on")
    off, on = (pd.read_parquet(tmp_path / d / "metrics") for d in ("off", "on"))
    losses = lambda m: m[m.metric == "train/loss"].sort_values("step").value.to_numpy()  # noqa: E731
    np.testing.assert_array_equal(losses(off), losses(on))
    assert sorted(on[on.metric == "ics/layer05/cosine"].step) == [1, 3, 6, 9, 12]
    assert sorted(on[on.metric == "landscape/beta_smoothness"].step) == [1, 4, 8, 12]
    assert sorted(on[on.metric == "sharpness/top_eigenvalue"].step) == [1, 5, 10]
    assert np.isfinite(on[on.metric.str.startswith("sharpness/")].value).all()
    assert (on[on.metric.str.startswith("landscape/")].value > 0).all()
    cos = on[on.metric.str.endswith("/cosine")].value
    assert ((cos > -1 - 1e-9) & (cos < 1 + 1e-9)).all()


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_lp_norm_normalises_as_defined(p):
    x = torch.randn(16, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 2
    layer = LpNorm(4, p, LpConfig())
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
        layer.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.0]))
    out = layer(x)
    xc = x.transpose(0, 1).reshape(4, -1)
    norm = xc.abs().amax(1) if p == float("inf") else xc.abs().pow(p).mean(1).pow(1 / p)
    expected = (xc - xc.mean(1, keepdim=True)) / (norm[:, None] + 1e-5)
    expected = expected * layer.weight[:, None] + layer.bias[:, None]
    torch.testing.assert_close(out.transpose(0, 1).reshape(4, -1), expected)
    torch.testing.assert_close(layer.running_mean, 0.1 * xc.mean(1))
    layer.eval()  # evaluation uses the running statistics
    torch.testing.assert_close(layer(x).transpose(0, 1).reshape(4, -1)[:, 0],
                               (xc[:, 0] - layer.running_mean) / (layer.running_norm + 1e-5) * layer.weight + layer.bias)


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_lp_norm_is_the_same_for_channels_last_and_linear_inputs(p):
    x = torch.randn(16, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 2
    out = LpNorm(4, p, LpConfig())(x)
    out_cl = LpNorm(4, p, LpConfig())(x.contiguous(memory_format=torch.channels_last))
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out)
    rows = x.transpose(0, 1).reshape(4, -1).T  # (positions, channels): what a linear layer gives
    torch.testing.assert_close(LpNorm(4, p, LpConfig())(rows), out.transpose(0, 1).reshape(4, -1).T)


def test_lp_models_train(tiny_cfg, tmp_path):
    for norm in ("lp1", "lp2", "lpinf"):
        summary = train(tiny_cfg(f"model=vgg_{norm}", "trainer.max_steps=4"), tmp_path / norm)
        assert summary["status"] == "completed" and np.isfinite(summary["final"]["train_loss"])


def test_dln_preset_runs(tmp_path):
    from tests.conftest import compose

    cfg = compose(["experiment=dln", "trainer.max_steps=30", "trainer.log_every=10", "trainer.eval_every=30",
                   "ics.every=10", "landscape.every=10", "probe.every=10", "trainer.progress_bar=false",
                   "model.norm=batch"])
    assert (cfg.model.depth, cfg.optim.lr, cfg.ics.layers) == (25, 1e-6, [9, 17])
    summary = train(cfg, tmp_path)
    m = pd.read_parquet(tmp_path / "metrics")
    assert summary["status"] == "completed" and "train/acc" not in set(m.metric)
    assert {"ics/layer09/l2_diff", "ics/layer17/cosine", "landscape/beta_smoothness"} <= set(m.metric)
    acts = pd.read_parquet(tmp_path / "activations")
    assert set(acts.layer) == set(range(1, 26))


def test_ics_and_the_landscape_of_a_bf16_run_are_measured_in_fp32(tiny_cfg, tmp_path):
    """At lr 0.001 a step moves a weight by ~1e-4 of itself, below bf16's resolution (~0.4%): passes
    under bf16 autocast would see no update at all (||G - G'|| from rounding alone). Measured in fp32,
    a bf16 run's step-1 ICS and landscape agree with an fp32 run's, whose weights and batch are the
    same at step 1 and whose update differs only by bf16's gradient error (~1%)."""
    measured = ["model=vgg", "optim.lr=0.001", "ics.enabled=true", "ics.every=100", "ics.layers=[2,5]",
                "landscape.enabled=true", "landscape.every=100", "trainer.max_steps=2", "probe.enabled=false"]
    step1 = {}
    for precision in ("fp32", "bf16"):
        train(tiny_cfg(*measured, f"trainer.precision={precision}"), tmp_path / precision)
        m = pd.read_parquet(tmp_path / precision / "metrics")
        step1[precision] = m[m.step == 1].set_index("metric").value
    for name in ("ics/layer02/l2_diff", "ics/layer05/l2_diff", "landscape/beta_smoothness", "landscape/gradpred_max",
                 "landscape/grad_norm"):
        assert step1["bf16"][name] == pytest.approx(step1["fp32"][name], rel=0.05), name
    assert step1["bf16"]["landscape/grad_norm"] == step1["fp32"]["landscape/grad_norm"]  # g itself: the same fp32 pass
