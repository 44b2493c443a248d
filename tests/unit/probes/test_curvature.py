"""The curvature measurements against exact Hessians: a quadratic with a known spectrum, and a tiny
network with BN in training mode in float64 whose Hessian is formed in full."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from ics_study.probes import Replay
from ics_study.probes.curvature import HessianVector, gradient_curvature, hutchinson_trace, top_eigenvalue


def quadratic(eigenvalues: list[float], seed: int = 0):
    """L(w) = w^T A w / 2 + b^T w with A = Q diag(eigenvalues) Q^T: H = A everywhere."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=g, dtype=torch.float64)
    w = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    return a, w, lambda: 0.5 * w @ a @ w + b @ w


def test_the_top_eigenvalue_is_the_largest_not_the_largest_in_magnitude():
    """A spectrum whose most negative eigenvalue outweighs its top: power iteration would give -10,
    Lanczos gives the top, 3 (the sharpness the edge of stability speaks of)."""
    spectrum = [-10.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, -0.2, -1.0, 0.0] * 3
    a, w, loss = quadratic(spectrum)
    found = top_eigenvalue(HessianVector(loss, [w]), iterations=30, tol=1e-10, generator=torch.Generator().manual_seed(1))
    assert found.value == pytest.approx(3.0, rel=1e-8) and found.converged
    assert torch.allclose(a @ found.vector, 3.0 * found.vector, atol=1e-6)  # its vector is the eigenvector
    v = torch.randn(len(spectrum), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for _ in range(60):  # what power iteration would have said
        v = a @ v / (a @ v).norm()
    assert float(v @ a @ v) == pytest.approx(-10.0, rel=1e-6)


def test_a_warm_start_at_the_top_vector_converges_at_once():
    a, w, loss = quadratic([5.0, 4.9, 1.0, 0.5, -3.0, 2.0, 0.1, 0.2])
    top = torch.linalg.eigh(a).eigenvectors[:, -1]
    warm = top_eigenvalue(HessianVector(loss, [w]), iterations=8, tol=1e-9, start=top)
    assert warm.value == pytest.approx(5.0, rel=1e-9) and warm.iterations <= 2


def test_gradient_curvature_and_the_trace_of_a_quadratic():
    a, w, loss = quadratic([4.0, 1.0, -0.5, 2.0, 0.0, 3.0])
    hvp = HessianVector(loss, [w])
    g = hvp.flat_grad
    assert gradient_curvature(hvp) == pytest.approx(float(g @ a @ g / (g @ g)), rel=1e-12)
    trace, error = hutchinson_trace(hvp, samples=400, generator=torch.Generator().manual_seed(3))
    assert abs(trace - float(torch.trace(a))) <= 4 * error and error < 0.5


class TinyBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hessian and gradient of the batch loss in every parameter, formed in full (train-mode BN)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_of(v):
        params, at = {}, 0
        for n, s in zip(names, shapes):
            params[n] = v[at : at + math.prod(s)].view(s)
            at += math.prod(s)
        return nn.functional.cross_entropy(functional_call(model, params, (x,)), y)

    h = torch.autograd.functional.hessian(loss_of, flat)
    g = torch.autograd.functional.jacobian(loss_of, flat)
    model.load_state_dict(saved)  # the functional calls updated BN's running statistics
    return h, g


def test_a_network_with_batchnorm_in_training_mode_matches_its_exact_hessian():
    torch.manual_seed(0)
    model = TinyBN().double().train()
    x, y = torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    h, g = exact_hessian(model, x, y)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    with Replay(model, None).isolated():  # as the loop runs it: BN's running statistics restored
        hvp = HessianVector(lambda: nn.functional.cross_entropy(model(x), y), params)
        found = top_eigenvalue(hvp, iterations=len(g), tol=1e-12, generator=torch.Generator().manual_seed(0))
        curvature = gradient_curvature(hvp)
        trace, error = hutchinson_trace(hvp, samples=300, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())
    assert torch.allclose(hvp.flat_grad, g, atol=1e-12)
    top = float(torch.linalg.eigvalsh(h)[-1])
    assert found.value == pytest.approx(top, rel=1e-8)
    assert curvature == pytest.approx(float(g @ h @ g / (g @ g)), rel=1e-8)
    assert abs(trace - float(torch.trace(h))) <= 4 * error
    v = torch.randn(len(g), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(HessianVector(lambda: nn.functional.cross_entropy(model(x), y), params)(v), h @ v, atol=1e-10)


class TinyLp(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        from ics_study.config import LpConfig
        from ics_study.models.lp_norm import LpNorm

        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.norm = LpNorm(3, p, LpConfig())
        self.head = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_an_lp_network_s_hessian_vector_products_are_exact_only_through_the_formula(p):
    """The l_p layers' fused backward, differentiated again, holds their batch statistics constant:
    H v through it is wrong. The probe builds its graph inside ``twice_differentiable()``."""
    from ics_study.models.norms import twice_differentiable

    torch.manual_seed(0)
    model = TinyLp(p).double().train()
    x, y = torch.randn(6, 2, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    with twice_differentiable():
        h, g = exact_hessian(model, x, y)
        exact = HessianVector(lambda: nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    fused = HessianVector(lambda: nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    v = torch.randn(len(g), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(exact(v), h @ v, atol=1e-9)
    assert torch.allclose(fused.flat_grad, g, atol=1e-12)  # first derivatives agree ...
    assert not torch.allclose(fused(v), h @ v, atol=1e-6)  # ... second ones do not


def small_vgg(norm: str = "none"):
    from ics_study.config import ModelConfig
    from ics_study.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="t", depth=11, width=0.0625, norm=norm))
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    return model, x, y


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")  # PyHessian's own call
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_agrees_with_pyhessian_on_a_small_vgg(norm):
    """PyHessian (Yao et al. 2020), an independent implementation, on a VGG-11 at width 1/16: its power
    iteration's top eigenvalue and its Hutchinson trace. PyHessian puts the model in evaluation mode,
    so here BN uses its running statistics in both."""
    pyhessian = pytest.importorskip("pyhessian")
    model, x, y = small_vgg(norm)
    model.eval()
    torch.manual_seed(3)  # PyHessian draws from the global generator
    theirs = pyhessian.hessian(model, nn.functional.cross_entropy, data=(x, y), cuda=False)
    (their_top,), _ = theirs.eigenvalues(maxIter=300, tol=1e-6)
    their_trace = torch.tensor(theirs.trace(maxIter=300, tol=0.0), dtype=torch.float64)
    model.zero_grad(set_to_none=True)
    hvp = HessianVector(lambda: nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    ours = top_eigenvalue(hvp, iterations=60, tol=1e-7, generator=torch.Generator().manual_seed(4))
    trace, error = hutchinson_trace(hvp, samples=300, generator=torch.Generator().manual_seed(5))
    assert their_top > 0 and ours.converged  # power iteration found the top (not a larger negative one)
    assert ours.value == pytest.approx(their_top, rel=2e-3)
    their_error = float(their_trace.std() / len(their_trace) ** 0.5)
    assert abs(trace - float(their_trace.mean())) <= 4 * math.hypot(error, their_error)


def test_the_probe_warm_starts_from_its_last_vector_and_a_checkpoint_keeps_it():
    from ics_study.config import SharpnessConfig
    from ics_study.probes.curvature import SharpnessProbe

    model, x, y = small_vgg("batch")
    model.train()
    loss = lambda: nn.functional.cross_entropy(model(x), y)  # noqa: E731
    loss().backward()
    probe = SharpnessProbe(SharpnessConfig(enabled=True, iterations=40, tol=1e-4), seed=0)
    cold = probe.measure(model, loss, Replay(model, None))
    saved = probe.state_dict()
    warm = probe.measure(model, loss, Replay(model, None))  # same weights: the last vector is the answer
    assert warm["sharpness/iterations"] < cold["sharpness/iterations"]
    assert float(warm["sharpness/top_eigenvalue"]) == pytest.approx(float(cold["sharpness/top_eigenvalue"]), rel=1e-3)
    resumed = SharpnessProbe(SharpnessConfig(enabled=True, iterations=40, tol=1e-4), seed=0)
    resumed.load_state_dict(saved)
    again = resumed.measure(model, loss, Replay(model, None))
    assert {k: float(v) for k, v in again.items()} == {k: float(v) for k, v in warm.items()}


def test_a_run_with_the_probe_writes_its_numbers_to_the_table_and_to_tensorboard(tiny_cfg, tmp_path):
    import numpy as np
    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ics_study.train import train

    train(tiny_cfg("model=vgg_bn", "logger.tensorboard=true", "sharpness.enabled=true", "sharpness.every=4",
                   "sharpness.iterations=5", "sharpness.trace_samples=3", "trainer.max_steps=8"), tmp_path)
    m = pd.read_parquet(tmp_path / "metrics")
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0}).Reload()
    for name in ("top_eigenvalue", "iterations", "converged", "gradient_curvature", "trace", "trace_stderr"):
        table = m[m.metric == f"sharpness/{name}"].sort_values("step")
        assert list(table.step) == [1, 4, 8], name
        board = events.Scalars(f"sharpness/{name}")
        assert [e.step for e in board] == [1, 4, 8]
        np.testing.assert_allclose([e.value for e in board], table.value, rtol=1e-6)  # float32 in events
    assert (m[m.metric == "sharpness/iterations"].value <= 5).all()
