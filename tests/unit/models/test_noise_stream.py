"""The counter-based noise stream against Algorithm 1 (PROTOCOL.md), at every layer of VGG-16.

Each test draws what a noisy BN layer draws and compares it with the spec: the per-element parts
with the per-channel parts pinned (n_mu = 0, n_sigma = 1: m = r_mu (2u - 1), s = 1 + r_sigma z), the
per-channel parts with the per-element parts off (r_mu = r_sigma = 0), then independence, both
precisions, thread counts, and a known answer from an independent splitmix64 in plain Python.
Kolmogorov-Smirnov thresholds are at a false-alarm rate of 1e-6 (the seeds are fixed, so a test is
deterministic; a wrong distribution misses them by orders of magnitude).
"""

from __future__ import annotations

import math

import pytest
import torch

from ics_study.errors import UserError
from ics_study.models.noise_stream import CHANNELS_AT, ELEMENT_BITS, CounterStream
from ics_study.models.vgg import PLANS
from tests.helpers.stats import ks, ks_limit, normal_cdf, uniform_cdf

WIDTH, BATCH = 0.25, 128


def vgg16_shapes() -> list[tuple[int, int, int, int]]:
    """(N, C, H, W) of the 13 noisy BN outputs of VGG-16 at width 1/4, batch 128 (8.8 M elements)."""
    shapes, size = [], 32
    for item in PLANS[16]:
        if item == "M":
            size //= 2
        else:
            shapes.append((BATCH, round(item * WIDTH), size, size))
    return shapes


def draw(stream, shape, n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1, dtype=torch.float32):
    """(s, m) as (rows, C) in the draw's (N, H, W, C) order."""
    n, c = math.prod(shape), shape[1]
    s, m = stream.noise(n, c, n_mu, n_sigma, r_mu, r_sigma, dtype)
    return s.view(-1, c), m.view(-1, c)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_per_element_parts_at_every_layer(compiled):
    """m ~ U(mu_j - r_mu, mu_j + r_mu), s ~ N(sigma_j, r_sigma) with mu_j = 0, sigma_j = 1 pinned."""
    stream = CounterStream(compiled=compiled).manual_seed(11)
    shapes = vgg16_shapes() if compiled else vgg16_shapes()[-6:]  # eager is slower; its integers are the same
    for k, shape in enumerate(shapes):
        s, m = draw(stream, shape, n_mu=0.0, n_sigma=1.0, r_mu=0.1, r_sigma=0.1)
        u, z = m / 0.1, (s - 1.0) / 0.1
        assert u.abs().max() < 1 and len(u.flatten()) == math.prod(shape), k
        limit = ks_limit(u.numel())
        assert ks(u, uniform_cdf(-1, 1)) < limit, f"layer {k + 1}: m is not U(mu - r_mu, mu + r_mu)"
        assert ks(z, normal_cdf) < limit, f"layer {k + 1}: s is not N(sigma, r_sigma)"
        assert abs(z.double().std().item() - 1) < 6 / math.sqrt(2 * z.numel())  # r_sigma is a std, not a variance


def test_per_channel_parts_over_many_steps():
    """mu_j ~ U(-n_mu, n_mu) and sigma_j ~ U(1, n_sigma), per channel, fresh at every draw."""
    stream = CounterStream().manual_seed(3)
    mus, sigmas = [], []
    for _ in range(300):
        s, m = draw(stream, (2, 128, 1, 1), r_mu=0.0, r_sigma=0.0)
        assert torch.equal(m[0], m[1]) and torch.equal(s[0], s[1])  # one value per channel
        mus.append(m[0])
        sigmas.append(s[0])
    mu, sigma = torch.stack(mus), torch.stack(sigmas)
    limit = ks_limit(mu.numel())
    assert ks(mu, uniform_cdf(-0.5, 0.5)) < limit and ks(sigma, uniform_cdf(1.0, 1.25)) < limit
    assert mu.abs().max() < 0.5 and sigma.min() > 1 and sigma.max() < 1.25
    # fresh every step: successive draws uncorrelated, channel by channel
    r = torch.corrcoef(torch.stack([mu[:-1].flatten(), mu[1:].flatten()]))[0, 1].item()
    assert abs(r) < 5 / math.sqrt(mu[1:].numel())


def test_draws_are_independent_of_each_other():
    stream = CounterStream().manual_seed(5)
    shape = (128, 32, 16, 16)
    s, m = draw(stream, shape, n_mu=0.0, n_sigma=1.0)
    s2, m2 = draw(stream, shape, n_mu=0.0, n_sigma=1.0)
    u, z, z2 = m.flatten(), (s.flatten() - 1) / 0.1, (s2.flatten() - 1) / 0.1
    bound = 5 / math.sqrt(len(z))

    def corr(a, b):
        return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()

    assert abs(corr(u, z)) < bound and abs(corr(u.abs(), z**2)) < bound  # m and s of one element: one hash's bits
    assert abs(corr(z[:-1], z[1:])) < bound and abs(corr(u[:-1], u[1:])) < bound  # neighbours
    assert abs(corr(z[:-1] ** 2, z[1:] ** 2)) < bound
    assert abs(corr(z, z2)) < bound  # the next draw
    other = CounterStream().manual_seed(6)
    assert abs(corr(z, (draw(other, shape, n_mu=0.0, n_sigma=1.0)[0].flatten() - 1) / 0.1)) < bound  # another seed


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_same_numbers_at_any_thread_count_and_bf16_is_fp32_rounded(compiled):
    """m is bit-identical at any thread count; s to within one ulp: the compiled kernel's loop is
    split among the threads, and in the full suite (another kernel variant built earlier, 1 thread
    against 3) 2.5% of the s values differed in their last bit."""
    shape = (64, 48, 8, 8)
    want = draw(CounterStream(compiled=compiled).manual_seed(9), shape)
    threads = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            s, m = draw(CounterStream(compiled=compiled).manual_seed(9), shape)
            assert torch.equal(m, want[1]), f"m, {n} threads against {threads}"
            rel = ((s - want[0]).abs() / want[0].abs()).max().item()
            assert rel <= 1.2e-7, f"s, {n} threads against {threads}: {int((s != want[0]).sum())} differ, by {rel:.2e}"
    finally:
        torch.set_num_threads(threads)
    bf16 = draw(CounterStream(compiled=compiled).manual_seed(9), shape, dtype=torch.bfloat16)
    assert all(b.dtype == torch.bfloat16 and torch.equal(b, a.to(torch.bfloat16)) for a, b in zip(want, bf16))


def test_compiled_and_eager_kernels_agree():
    """The same integers; floats within a few ulps (transcendentals fused differently)."""
    for n, c in ((9, 3), (128 * 64 * 7, 64), (2 * 5, 5)):  # short and odd counts: the loops' tails
        a = CounterStream(compiled=True).manual_seed(2).noise(n, c, 0.5, 1.25, 0.1, 0.1, torch.float32)
        b = CounterStream(compiled=False).manual_seed(2).noise(n, c, 0.5, 1.25, 0.1, 0.1, torch.float32)
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=3e-7)
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=2e-6)


# --- a known answer: splitmix64 in plain Python -------------------------------------------------
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def reference(seed: int, draw_index: int, position: int) -> tuple[float, float, float]:
    """The three uniforms (u, v, w) of one position of one draw, by the module docstring's formula."""
    key = mix64((seed + 1) * GOLDEN)
    h = mix64(key + ((draw_index << ELEMENT_BITS) + position) * GOLDEN)
    return ((h >> 42) + 0.5) / 2**22, (((h >> 19) & (2**23 - 1)) + 0.5) / 2**23, ((h & (2**19 - 1)) + 0.5) / 2**19


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
def test_the_stream_is_splitmix64_as_documented(compiled):
    stream = CounterStream(compiled=compiled).manual_seed(42)
    stream.noise(6, 2, 0.5, 1.25, 0.1, 0.1, torch.float32)  # draw 0, so that the next one is draw 1
    n, c = 70, 2
    s, m = stream.noise(n, c, 0.5, 1.25, 0.1, 0.1, torch.float32)
    a = torch.linspace(-2, 2, n).view(-1, c)
    out = stream.add_noise(a, 0.5, 1.25, 0.1, 0.1)  # draw 2
    for e in range(n):
        for draw_index, got_s, got_m in ((1, s[e].item(), m[e].item()), (2, None, None)):
            u_mu, v_sigma, _ = reference(42, draw_index, CHANNELS_AT + e % c)
            mu, sigma = 0.5 * (2 * u_mu - 1), 1 + 0.25 * v_sigma
            u, v, w = reference(42, draw_index, e)
            want_s = sigma + 0.1 * math.sqrt(-2 * math.log(v)) * math.cos(2 * math.pi * w)
            want_m = mu + 0.1 * (2 * u - 1)
            if got_s is None:  # add_noise: s a + m with the same numbers
                assert out.view(-1)[e].item() == pytest.approx(want_s * a.view(-1)[e].item() + want_m, abs=5e-6)
            else:
                assert got_m == pytest.approx(want_m, abs=1e-6)
                assert got_s == pytest.approx(want_s, abs=1e-6)


def test_state_replays_a_draw_and_a_generator_state_is_refused():
    stream = CounterStream().manual_seed(8)
    draw(stream, (4, 8, 2, 2))
    state = stream.get_state()
    assert state.dtype == torch.uint8 and state.numel() == 16
    first = draw(stream, (4, 8, 2, 2))
    stream.set_state(state)
    assert all(torch.equal(a, b) for a, b in zip(draw(stream, (4, 8, 2, 2)), first))
    assert stream.initial_seed() == 8
    with pytest.raises(UserError, match="model.noise.rng=generator"):
        stream.set_state(torch.Generator().manual_seed(1).get_state())


def test_the_compiled_kernel_is_built_once_per_dtype_whatever_the_caller_s_mode():
    """torch.compile guards on grad mode, inference mode and autocast, and past 8 variants it runs
    the function eagerly without a word (slower, and s a few ulps off): the stream calls its kernel
    in one fixed mode, so training, evaluation (no_grad), inference mode and autocast share it."""
    import torch._dynamo.utils

    def draws(apply=True):
        for dtype in (torch.float32, torch.bfloat16):
            draw(CounterStream().manual_seed(4), (16, 8, 4, 4), dtype=dtype)
            for grad in (True, False) if apply else ():  # a training forward; an evaluation or probe forward
                a = torch.ones(64, 8, dtype=dtype, requires_grad=grad)
                CounterStream().manual_seed(4).add_noise(a, 0.5, 1.25, 0.1, 0.1)

    draws()  # builds what this process still lacks
    frames = torch._dynamo.utils.counters["frames"]["ok"]
    with torch.no_grad():
        draws()
    with torch.inference_mode():  # add_noise is given the caller's activation: an inference tensor
        draws(apply=False)  # would be a variant of its own (the runs never use inference mode)
    with torch.autocast("cpu", torch.bfloat16):
        draws()
    for shape in ((32, 16, 8, 8), (128, 64, 2, 2), (40, 7, 1, 1)):  # other shapes: dynamic, no new build
        draw(CounterStream().manual_seed(4), shape)
    assert torch._dynamo.utils.counters["frames"]["ok"] == frames


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_add_noise_applies_the_draw_s_numbers_and_its_gradient_is_s(dtype):
    """add_noise(a) = s a + m with the (s, m) that noise() gives for the same draw, computed in fp32
    and rounded once, at the first and last layers of VGG-16; d out / d a = s."""
    for shape in (vgg16_shapes()[0], vgg16_shapes()[-1]):
        n, c = math.prod(shape), shape[1]
        s, m = (t.view(-1, c) for t in CounterStream().manual_seed(7).noise(n, c, 0.5, 1.25, 0.1, 0.1, torch.float32))
        a = torch.randn(n // c, c, generator=torch.Generator().manual_seed(1)).to(dtype).requires_grad_()
        out = CounterStream().manual_seed(7).add_noise(a, 0.5, 1.25, 0.1, 0.1)
        assert out.dtype == dtype
        # the two kernels compute s in their own vectorised loops: a few ulps apart (see the compiled-
        # vs-eager test), then the output rounds once to its dtype
        exact = s.double() * a.detach().double() + m.double()
        allowed = 8 * 2.0**-24 * (s.double().abs() * a.detach().double().abs() + m.double().abs())
        allowed += torch.finfo(dtype).eps * exact.abs() if dtype != torch.float32 else 0
        assert ((out.detach().double() - exact).abs() <= allowed).all()
        out.backward(torch.ones_like(out))
        torch.testing.assert_close(a.grad.float(), s.to(dtype).float(), rtol=8 * 2.0**-24 + torch.finfo(dtype).eps,
                                   atol=0)


def test_a_training_and_an_evaluation_forward_share_one_compiled_noise_kernel():
    """add_noise gets the caller's activation, which requires grad in training and not in an
    evaluation or probe forward: the kernel sees it detached, so both use one compiled variant (each
    variant counts toward torch.compile's limit of 8, past which it silently runs eagerly)."""
    import torch._dynamo.utils

    for dtype in (torch.float32, torch.bfloat16):
        CounterStream().manual_seed(4).add_noise(torch.ones(48, 6, dtype=dtype, requires_grad=True), 0.5, 1.25, 0.1, 0.1)
        frames = torch._dynamo.utils.counters["frames"]["ok"]
        with torch.no_grad():
            CounterStream().manual_seed(4).add_noise(torch.ones(48, 6, dtype=dtype), 0.5, 1.25, 0.1, 0.1)
        assert torch._dynamo.utils.counters["frames"]["ok"] == frames, dtype
