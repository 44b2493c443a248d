"""The noisy BN against Algorithm 1 of the paper, on a fixed input, with every source of its random
numbers: the counter-based stream (compiled and eager) and torch's generator. The counter stream's
own statistics, layer by layer, are in tests/unit/models/test_noise_stream.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ics_study.config import NoiseConfig
from ics_study.models.noise_stream import CounterStream
from ics_study.models.noisy_bn import NoisyBatchNorm

C = 256  # many channels so that per-channel draws cover their ranges
STREAMS = {"counter": lambda seed: CounterStream().manual_seed(seed),
           "counter-eager": lambda seed: CounterStream(compiled=False).manual_seed(seed),
           "generator": lambda seed: torch.Generator().manual_seed(seed)}


@pytest.fixture(params=sorted(STREAMS), autouse=True)
def stream(request, monkeypatch):
    """Every test runs once per stream kind (make_layer reads it)."""
    monkeypatch.setitem(globals(), "_STREAM", STREAMS[request.param])
    return request.param


_STREAM = STREAMS["counter"]


def make_layer(seed=0, **noise):
    layer = NoisyBatchNorm(C, NoiseConfig(**noise))
    layer.generator = _STREAM(seed)
    with torch.no_grad():
        layer.weight.fill_(2.0)  # gamma and beta non-trivial: noise must come after them
        layer.bias.fill_(0.3)
    return layer


def fixed_input():
    return torch.randn(32, C, 6, 6, generator=torch.Generator().manual_seed(123)) * 3 + 1


def bn_output(layer, x):
    return F.batch_norm(x, None, None, layer.weight, layer.bias, training=True, eps=layer.eps)


def noise_of(layer, x):
    """(s, m, out) of one training forward: the generator is replayed to recover the draws."""
    state = layer.generator.get_state()
    out = layer(x)
    layer.generator.set_state(state)
    s, m = layer.draw_noise(bn_output(layer, x))
    return s, m, out


def test_output_is_scale_times_bn_output_plus_shift():
    layer, x = make_layer(), fixed_input()
    s, m, out = noise_of(layer, x)
    torch.testing.assert_close(out, s * bn_output(layer, x) + m)


def test_per_channel_mu_and_sigma_in_stated_ranges():
    layer, x = make_layer(), fixed_input()
    s, m, _ = noise_of(layer, x)
    mu = m.mean(dim=(0, 2, 3))  # per channel, estimates mu_j (1152 elements each)
    sigma = s.mean(dim=(0, 2, 3))
    assert mu.abs().max() < 0.5 + 0.01 and sigma.min() > 1 - 0.01 and sigma.max() < 1.25 + 0.01
    # mu_j ~ U(-0.5, 0.5): spread over the whole range, variance 1/12
    assert mu.min() < -0.4 and mu.max() > 0.4
    assert abs(mu.var().item() - 1 / 12) < 0.02
    assert sigma.min() < 1.03 and sigma.max() > 1.22
    assert abs(sigma.var().item() - 0.25**2 / 12) < 0.002


def test_per_element_draws_around_the_channel_values():
    layer, x = make_layer(), fixed_input()
    s, m, _ = noise_of(layer, x)
    m_c = m.transpose(0, 1).reshape(C, -1)
    s_c = s.transpose(0, 1).reshape(C, -1)
    # m ~ U(mu_j - 0.1, mu_j + 0.1): within-channel width below 0.2 and std 0.2/sqrt(12)
    width = m_c.max(1).values - m_c.min(1).values
    assert width.max() <= 0.2 + 1e-5 and width.min() > 0.19
    assert torch.allclose(m_c.std(1), torch.full((C,), 0.2 / 12**0.5), atol=0.006)
    # s ~ N(sigma_j, 0.1)
    assert torch.allclose(s_c.std(1), torch.full((C,), 0.1), atol=0.008)


def test_fresh_draws_every_step():
    layer, x = make_layer(), fixed_input()
    s1, m1, _ = noise_of(layer, x)
    layer(x)  # advance past the replayed draw
    s2, m2, _ = noise_of(layer, x)
    mu1, mu2 = m1.mean(dim=(0, 2, 3)), m2.mean(dim=(0, 2, 3))
    assert torch.corrcoef(torch.stack([mu1, mu2]))[0, 1].abs() < 0.2
    assert not torch.allclose(s1, s2)


def test_no_noise_in_eval_mode():
    layer, x = make_layer(), fixed_input()
    layer(x)  # update running statistics
    layer.eval()
    expected = F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)
    torch.testing.assert_close(layer(x), expected)


def test_gradients_flow_to_input_and_affine_parameters():
    layer, x = make_layer(), fixed_input().requires_grad_()
    layer(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and layer.weight.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0


def test_same_seed_same_noise_and_constants_come_from_config():
    x = fixed_input()
    torch.testing.assert_close(make_layer(seed=5)(x), make_layer(seed=5)(x))
    layer = make_layer(n_mu=0.0, n_sigma=1.0, r_mu=0.0, r_sigma=0.0)  # no noise at all
    torch.testing.assert_close(layer(x), bn_output(layer, x))


def test_same_noise_in_either_memory_layout_and_the_output_keeps_the_input_layout():
    x = fixed_input()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out, out_cl = make_layer(seed=3)(x), make_layer(seed=3)(x_cl)
    assert out.is_contiguous() and out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)  # BN's reductions may round differently
    s, m, _ = noise_of(make_layer(seed=3), x)
    s_cl, m_cl, _ = noise_of(make_layer(seed=3), x_cl)
    assert torch.equal(s_cl, s) and torch.equal(m_cl, m)


def test_linear_layers_get_per_unit_noise():
    layer = make_layer()
    x = torch.randn(4096, C, generator=torch.Generator().manual_seed(1))
    s, m, out = noise_of(layer, x)
    torch.testing.assert_close(out, s * bn_output(layer, x) + m)
    assert s.shape == m.shape == x.shape
    assert torch.allclose(s.std(0), torch.full((C,), 0.1), atol=0.008)  # N(sigma_j, 0.1) per unit
    assert (m.max(0).values - m.min(0).values).max() <= 0.2 + 1e-5  # U(mu_j +- 0.1) per unit


def test_the_noise_only_control_adds_the_same_noise_to_its_input_with_no_bn():
    """model.norm=noise (the paper's control): out = s * x + m on the layer's input itself, the same
    (s, m) as the noisy BN draws; evaluation mode adds nothing; the run's stream reaches it."""
    from ics_study.models.noisy_bn import NoiseOnly, noisy_layers

    layer = NoiseOnly(C, NoiseConfig())
    layer.generator = _STREAM(0)
    x = fixed_input()
    state = layer.generator.get_state()
    out = layer(x)
    layer.generator.set_state(state)
    s, m = layer.draw_noise(x)
    torch.testing.assert_close(out, s * x + m)
    assert not list(layer.parameters())  # no gamma, no beta, no running statistics
    assert torch.equal(layer.eval()(x), x)
    found = noisy_layers(torch.nn.Sequential(layer, make_layer()))  # both kinds get the run's stream
    assert len(found) == 2 and found[0] is layer and isinstance(found[1], NoisyBatchNorm)
