"""The noise's ablation options (NoiseConfig: strength, granularity, redraw_every, in_eval) against
what they say, with every source of random numbers. The per-unit parts are checked with the
per-element parts off (r_mu = r_sigma = 0: then m = mu and s = sigma exactly), the per-element parts
with the per-unit parts pinned, as tests/unit/models/test_noise_stream.py does for the default.
Kolmogorov-Smirnov limits at a false-alarm rate of 1e-6 (tests/helpers/stats.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ics_study.config import NoiseConfig
from ics_study.models.noise_stream import CounterStream
from ics_study.models.noisy_bn import NoiseOnly, NoisyBatchNorm
from ics_study.probes.replay import Replay
from tests.helpers.stats import ks, ks_limit, normal_cdf, uniform_cdf

STREAMS = {"counter": lambda seed: CounterStream().manual_seed(seed),
           "counter-eager": lambda seed: CounterStream(compiled=False).manual_seed(seed),
           "generator": lambda seed: torch.Generator().manual_seed(seed)}
PINNED = {"r_mu": 0.0, "r_sigma": 0.0}  # per-element parts off: m = mu, s = sigma


@pytest.fixture(params=sorted(STREAMS))
def stream(request):
    return STREAMS[request.param]


def layer_with(stream, channels=16, seed=0, **noise):
    layer = NoisyBatchNorm(channels, NoiseConfig(**noise))
    layer.generator = stream(seed)
    return layer


def x_like(n=8, c=16, h=4, w=4, seed=1):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed)).contiguous(
        memory_format=torch.channels_last)


def draws(layer, x, steps):
    """(s, m) of ``steps`` consecutive training draws, each (N, C, H, W)."""
    return [layer.draw_noise(x) for _ in range(steps)]


def test_strength_scales_every_range(stream):
    """k = 2: mu ~ U(-1, 1), sigma ~ U(1, 1.5); m - mu ~ U(-0.2, 0.2), s - sigma ~ N(0, 0.2)."""
    layer = layer_with(stream, channels=64, strength=2.0, **PINNED)
    s, m = zip(*draws(layer, x_like(c=64, h=1, w=1), 40))
    mu, sigma = torch.stack([t[0, :, 0, 0] for t in m]), torch.stack([t[0, :, 0, 0] for t in s])
    assert ks(mu, uniform_cdf(-1.0, 1.0)) < ks_limit(mu.numel())
    assert ks(sigma, uniform_cdf(1.0, 1.5)) < ks_limit(sigma.numel())
    layer = layer_with(stream, channels=64, strength=2.0, n_mu=0.0, n_sigma=1.0)
    s, m = layer.draw_noise(x_like(n=64, c=64, h=8, w=8))
    assert ks(m, uniform_cdf(-0.2, 0.2)) < ks_limit(m.numel())
    assert ks((s - 1.0) / 0.2, normal_cdf) < ks_limit(s.numel())


def test_strength_zero_is_plain_batch_norm_and_the_stream_still_moves(stream):
    layer, x = layer_with(stream, strength=0.0), x_like()
    before = layer.generator.get_state().clone()
    out = layer(x)
    torch.testing.assert_close(out, F.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.1, layer.eps),
                               rtol=0, atol=0)
    assert not torch.equal(layer.generator.get_state(), before)  # as many draws as k = 1: seeds line up


@pytest.mark.parametrize("granularity", ["channel", "layer", "position"])
def test_granularity_decides_who_shares_a_pair(stream, granularity):
    """mu and sigma are constant over the batch always, and also over (h, w) per channel ("channel") or
    over the whole layer ("layer"); across the sharing units they are U(-n_mu, n_mu) and U(1, n_sigma)."""
    layer, x = layer_with(stream, granularity=granularity, **PINNED), x_like()
    s, m = layer.draw_noise(x)
    for t in (s, m):
        assert torch.equal(t, t[:1].expand_as(t))  # shared by the batch's samples
    per_channel = torch.equal(m, m[:, :, :1, :1].expand_as(m))
    one_for_all = torch.equal(m, m[:1, :1, :1, :1].expand_as(m))
    assert (per_channel, one_for_all) == {"channel": (True, False), "layer": (True, True),
                                          "position": (False, False)}[granularity]
    units = {"channel": lambda t: t[0, :, 0, 0], "layer": lambda t: t[0, :1, 0, 0],
             "position": lambda t: t[0].flatten()}[granularity]
    samples = [layer.draw_noise(x) for _ in range(300)]
    mu = torch.cat([units(m) for _, m in samples])
    sigma = torch.cat([units(s) for s, _ in samples])
    assert ks(mu, uniform_cdf(-0.5, 0.5)) < ks_limit(mu.numel())
    assert ks(sigma, uniform_cdf(1.0, 1.25)) < ks_limit(sigma.numel())


def test_a_position_pair_of_a_linear_layer_is_its_unit(stream):
    layer = layer_with(stream, granularity="position", **PINNED)
    s, m = layer.draw_noise(torch.randn(32, 16))
    assert torch.equal(m, m[:1].expand_as(m)) and len(set(m[0].tolist())) == 16


@pytest.mark.parametrize("every", [0, 1, 3])
def test_redraw_every_holds_the_pair_and_keeps_the_elements_fresh(stream, every):
    x = x_like()
    pairs = [m[0, :, 0, 0] for _, m in draws(layer_with(stream, redraw_every=every, **PINNED), x, 9)]
    same = [torch.equal(pairs[t], pairs[t + 1]) for t in range(8)]
    expected = {0: [True] * 8, 1: [False] * 8, 3: [(t + 1) % 3 != 0 for t in range(8)]}[every]
    assert same == expected
    # the per-element parts are fresh at every step, around the held pair
    (s1, m1), (s2, m2) = draws(layer_with(stream, redraw_every=every), x, 2)
    assert not torch.equal(m1, m2) and not torch.equal(s1, s2)
    if every != 1:
        assert (m1 - m2).abs().max() <= 0.2 + 1e-6  # |m - mu| <= r_mu = 0.1 on both sides
        torch.testing.assert_close(m1.mean(dim=(0, 2, 3)), m2.mean(dim=(0, 2, 3)), atol=0.03, rtol=0)


def test_held_pairs_survive_a_checkpoint(stream):
    x = x_like()
    layer = layer_with(stream, redraw_every=0)
    layer(x)
    state, noise = layer.state_dict(), layer.generator.get_state()
    assert {"noise_age", "held_mu", "held_sigma"} <= set(state)
    resumed = layer_with(stream, redraw_every=0, seed=99)
    resumed.load_state_dict(state)
    resumed.generator.set_state(noise)
    torch.testing.assert_close(resumed(x), layer(x), rtol=0, atol=0)
    assert "held_mu" not in layer_with(stream).state_dict()  # the paper's noise keeps its checkpoint format


def test_a_measurement_replay_sees_the_step_s_own_held_pair(stream):
    """Replay.rewind puts the held pair and its age back: the replayed forward is the training one, also
    at the step where a redraw is due."""
    x = x_like()
    layer = layer_with(stream, redraw_every=2)
    replay = Replay(layer, layer.generator)
    for _ in range(3):
        replay.mark_step_start()
        out = layer(x)
        with replay.isolated():
            replay.rewind()
            torch.testing.assert_close(layer(x), out, rtol=0, atol=0)


def test_noise_in_evaluation_uses_the_held_pair_and_running_statistics(stream):
    x = x_like()
    layer = layer_with(stream, redraw_every=0, in_eval=True, **PINNED)
    layer(x)
    layer.eval()
    clean = F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)
    mu, sigma = layer.held_mu.clone(), layer.held_sigma.clone()
    out = layer(x)
    assert not torch.allclose(out, clean)
    s, m = layer.draw_noise(x)  # evaluation mode: the held pair, nothing moves
    torch.testing.assert_close(out, s * clean + m)
    assert torch.equal(layer.held_mu, mu) and torch.equal(layer.held_sigma, sigma) and layer.noise_age.item() == 1
    assert torch.equal(layer_with(stream).eval()(x), layer_with(stream).eval()(x))  # default: no noise at all


def test_the_noise_only_control_takes_the_same_options(stream):
    layer = NoiseOnly(16, NoiseConfig(strength=0.5, granularity="layer", redraw_every=0, **PINNED))
    layer.generator = stream(0)
    x = x_like()
    first, second = layer(x) - x, layer(x) - x  # m + (s - 1) x: one pair for the layer, held
    s, m = layer.draw_noise(x)
    assert torch.equal(m, m.flatten()[0].expand_as(m)) and abs(m.flatten()[0].item()) <= 0.25
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_noise_in_evaluation_without_a_held_pair_draws_algorithm_1_per_batch(stream):
    """in_eval with the paper's timing: in evaluation mode each forward draws a fresh (mu, sigma) per
    channel, U(-n_mu, n_mu) and U(1, n_sigma), and nothing is held."""
    layer, x = layer_with(stream, channels=64, in_eval=True, **PINNED), x_like(c=64, h=1, w=1)
    layer.eval()
    pairs = [layer.draw_noise(x) for _ in range(40)]
    mu = torch.stack([m[0, :, 0, 0] for _, m in pairs])
    sigma = torch.stack([s[0, :, 0, 0] for s, _ in pairs])
    assert ks(mu, uniform_cdf(-0.5, 0.5)) < ks_limit(mu.numel())
    assert ks(sigma, uniform_cdf(1.0, 1.25)) < ks_limit(sigma.numel())
    assert not hasattr(layer, "noise_age")
