"""The noisy BN's random numbers from a counter-based generator: one vectorised pass, no state.

Every random number of Algorithm 1 is a pure function of (stream seed, draw, element): draw ``p`` is
the p-th noisy-layer forward of the stream, element ``e`` the index in the activation's (N, H, W, C)
order (the per-channel draws take indices past every element's). Its 64 random bits are splitmix64's
output at position ``(p << 36) + e`` of the stream (Steele, Lea and Flood 2014: the mixing function
of Java's SplittableRandom, BigCrush-clean), computed with vectorised integer operations:

    h = mix64(key + position * GOLDEN)                      key = mix64((seed + 1) * GOLDEN)
    u = (h >> 42 + 0.5) / 2^22,  v = ((h >> 19) & (2^23 - 1) + 0.5) / 2^23,  w = (h & (2^19 - 1) + 0.5) / 2^19

three uniforms in (0, 1) from the disjoint bits of one hash:
- per channel j: mu_j = n_mu (2u - 1), sigma_j = 1 + (n_sigma - 1) v;
- per element: m = mu_j + r_mu (2u - 1); s = sigma_j + r_sigma z, z = sqrt(-2 ln v) cos(2 pi w)
  standard normal (Box-Muller's cosine half: one hash per element, nothing shared between elements,
  so the kernel is purely elementwise and the noise can be applied in the same pass).

Uniforms sit on the midpoints of their lattices: symmetric, never 0 or 1, so the log is finite; the
radius's 2^23 lattice truncates |z| at 5.77 (a probability of 8e-9 beyond it). The distribution is
Algorithm 1's as read in PROTOCOL.md; the tests check its statistics layer by layer
(tests/unit/models/test_noise_stream.py, tests/unit/models/test_noisy_bn.py).

``add_noise`` applies the noise where it is drawn: s a + m from one read of the activation, computed
in fp32 and rounded once, with s kept for the backward pass (m is never stored).

Why not torch's CPU generator: it is serial (Mersenne twister), 2.9 ns a number, and the noise needs
two numbers per element of every BN output: 65 ms of a 177 ms fp32 step of VGG-16 at width 1/4 on the
2-core AMD EPYC, 88 ms of 155 in bf16 (docs/performance.md). Here the whole draw is one fused,
multi-threaded kernel when torch.compile can build it (Inductor's C++ backend: a compiler and the
Python headers; ~3 s once per process with a warm cache, ~13 s cold), and the same operations run
eagerly otherwise (slower than torch's generator, with one log line). Compiled and eager give the
same integers and the same m, and values of s that differ by a few ulps (transcendental functions
fused differently); between thread counts s may differ in its last bit (the compiled loop is split
among the threads). So a seed gives one trajectory per kernel and thread count, as the convolutions
do anyway; ``tests/unit/models/test_noise_stream.py`` checks all of it.

State is two integers (seed, next draw): ``get_state``/``set_state`` put a step's noise back for ICS
and the landscape exactly as a torch.Generator's state does, and a checkpoint stores 16 bytes.
On a GPU the run keeps torch's own Philox generator (already counter-based and parallel, and
registered with CUDA graphs), so nothing changes there (``NoiseConfig.rng``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import UserError

log = logging.getLogger("ics_study.noise")

# splitmix64's constants, as signed int64 (torch has no uint64 arithmetic)
_GOLDEN, _MIX1, _MIX2 = (c - (1 << 64) if c >= 1 << 63 else c
                         for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
NOISE_RNGS = ("auto", "counter", "generator")  # NoiseConfig.rng
ELEMENT_BITS = 36  # elements per draw < 2^35 (2^35 and up: the per-channel numbers); draws < 2^28
CHANNELS_AT = 1 << (ELEMENT_BITS - 1)
# The 64 bits of a position: m's uniform (its top 22), Box-Muller's radius (23) and angle (19). The
# radius's lattice truncates |z| at sqrt(2 ln 2^24) = 5.77 standard deviations (P = 8e-9 beyond);
# the angle's 2^19 steps are 1.2e-5 radians apart.
U_BITS, R_BITS, A_BITS = 22, 23, 19
_BITS = (U_BITS, R_BITS, A_BITS)


def _wrap(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _mix_int(z: int) -> int:  # mix64 on a Python int: the stream key
    z &= (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return _wrap(z ^ (z >> 31))


def _shr(z, k: int):
    """Logical right shift of 64 bits: torch's int64 >> is arithmetic (numpy's uint64 >> is logical already)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z, c):
    z = (z ^ _shr(z, 30)) * c[1]
    z = (z ^ _shr(z, 27)) * c[2]
    return z ^ _shr(z, 31)


def _fields(position, base, c) -> tuple:
    """The three integer fields of one position's 64 bits (torch int64 or numpy uint64)."""
    h = _mix(base + position * c[0], c)
    return _shr(h, 64 - U_BITS), _shr(h, A_BITS) & ((1 << R_BITS) - 1), h & ((1 << A_BITS) - 1)


def _uniforms(position: torch.Tensor, base: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Three independent uniforms in (0, 1) (lattice midpoints) from the 64 bits of one position."""
    return tuple((f.to(torch.float32) + 0.5) * 2.0**-bits for f, bits in zip(_fields(position, base, c), _BITS))


Hold = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # (mu, sigma) -> the pair used
_CONSTS = (_GOLDEN, _MIX1, _MIX2)  # constants of the compiled code (a tensor would be an input, and a size to guard)
_NP_CONSTS = np.array(_CONSTS, dtype=np.int64).view(np.uint64)


def _channel_numbers(base: int, channels: int, n_mu: float, n_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_j, sigma_j) of a draw: the same arithmetic as the elements', in numpy, as C numbers are too
    few to pay for a kernel (eager torch took 89 us a draw, a compiled call ~35 us, this ~15 us)."""
    position = np.arange(CHANNELS_AT, CHANNELS_AT + channels, dtype=np.uint64)
    u, v, _ = ((f.astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-bits)
               for f, bits in zip(_fields(position, np.uint64(base & ((1 << 64) - 1)), _NP_CONSTS), _BITS))
    return torch.from_numpy(n_mu * (2.0 * u - 1.0)), torch.from_numpy(1.0 + (n_sigma - 1.0) * v)


def _noise(k: torch.Tensor, base: torch.Tensor, c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
           r_mu: float, r_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, m) in float32 at positions ``k`` of shape (rows, C), C = len(mu)."""
    u, v, w = _uniforms(k, base, c)
    z = torch.sqrt(-2.0 * torch.log(v)) * torch.cos((2.0 * math.pi) * w)  # Box-Muller, the cosine half
    return sigma + r_sigma * z, mu + r_mu * (2.0 * u - 1.0)  # broadcast over rows, vectorised along C


def _positions(n: int, channels: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device, dtype=torch.int64).view(-1, channels)


def _elements(n: int, base: torch.Tensor, c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
              r_mu: float, r_sigma: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, m) for ``n`` elements in (..., C) order: one pass, fused when compiled."""
    s, m = _noise(_positions(n, mu.numel(), mu.device), base, c, mu, sigma, r_mu, r_sigma)
    return s.to(dtype).view(-1), m.to(dtype).view(-1)


def _apply(a: torch.Tensor, base: torch.Tensor, c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
           r_mu: float, r_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s a + m, s) for ``a`` of shape (rows, C) in the draw's order: one read of a, computed in float32
    and rounded once. The noise itself is never stored; s is, for the backward pass."""
    s, m = _noise(_positions(a.numel(), a.shape[1], a.device), base, c, mu, sigma, r_mu, r_sigma)
    return torch.addcmul(m, s, a.to(torch.float32)).to(a.dtype), s.to(a.dtype)


_compiled = None  # (elements, apply) compiled, built on first use; False once that failed


def _kernels():
    global _compiled
    if _compiled is None:
        quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found": true, and noise here
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            kernels = torch.compile(_elements, dynamic=True), torch.compile(_apply, dynamic=True)
            _check(*kernels)
            _compiled = kernels
        except Exception as e:  # no compiler, no Python headers, an unsupported platform: run eagerly
            log.warning("the noise kernel could not be compiled (%s); drawing it eagerly, which is slower",
                        str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
            _compiled = False
        finally:
            quiet.setLevel(level)
    return _compiled or (_elements, _apply)


def _check(elements, apply) -> None:
    """Build the kernels now (so that a failure shows here) and insist that they give eager's numbers
    on a draw long enough for their vectorised loops and their tails. Inductor's on-disk cache does
    not tell apart code built under another ATEN_CPU_CAPABILITY on the same machine: such code gave
    wrong numbers (and once corrupted the heap) when reused. Here it is refused and eager runs."""
    c = _CONSTS
    n, channels = 5 * 1367, 5  # not a multiple of any vector width: the loops' tails
    args = (torch.tensor(12345), c, torch.linspace(-0.5, 0.5, channels), torch.linspace(1, 1.25, channels), 0.1, 0.1)
    a = torch.linspace(-3, 3, n).view(-1, channels)
    got, want = (*elements(n, *args, torch.float32), *apply(a, *args)), (*_elements(n, *args, torch.float32), *_apply(a, *args))
    if not all(torch.allclose(g, w, rtol=0, atol=1e-5) for g, w in zip(got, want)):
        raise RuntimeError("the compiled noise kernel disagrees with the eager one (a stale Inductor cache? "
                           "delete TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_$USER)")


class _Noisy(torch.autograd.Function):
    """s a + m with the draw inside the forward pass; the backward pass multiplies by the saved s."""

    @staticmethod
    def forward(ctx, a, kernel, args):
        # detached and in one fixed mode: the caller's requires_grad, inference mode or autocast would
        # each be another compiled variant, and past 8 of them torch.compile silently runs eagerly
        with _fixed_mode(a.device.type):
            out, s = kernel(a.detach(), *args)
        ctx.save_for_backward(s)
        return out

    @staticmethod
    def backward(ctx, grad):
        (s,) = ctx.saved_tensors
        return grad * s, None, None


class CounterStream:
    """A seeded, counter-based stream of the noise's random numbers (the interface of torch.Generator
    that the runs use: manual_seed, initial_seed, get_state, set_state, device)."""

    def __init__(self, device: torch.device | str = "cpu", compiled: bool = True):
        self.device = torch.device(device)
        self.compiled = compiled  # False: the eager kernel (same integers, floats within a few ulps)
        self.manual_seed(0)

    def manual_seed(self, seed: int) -> CounterStream:
        self.seed, self.draws = int(seed), 0
        self._key = _mix_int((self.seed + 1) * 0x9E3779B97F4A7C15)
        return self

    def initial_seed(self) -> int:
        return self.seed

    def get_state(self) -> torch.Tensor:
        return torch.tensor([self.seed, self.draws], dtype=torch.int64).view(torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        if state.numel() != 16:  # a torch.Generator's state, from a run started with the other rng
            raise UserError(f"the saved noise state ({state.numel()} bytes) is torch.Generator's, not the counter "
                            "stream's: resume this run with model.noise.rng=generator, or delete its checkpoint.pt")
        seed, draws = state.view(torch.int64).tolist()
        self.manual_seed(seed)
        self.draws = draws

    def _base(self, draw: int) -> int:
        return _wrap(self._key + (draw << ELEMENT_BITS) * 0x9E3779B97F4A7C15)

    def noise(self, n: int, channels: int, n_mu: float, n_sigma: float, r_mu: float, r_sigma: float,
              dtype: torch.dtype, units: int | None = None, hold: Hold | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next draw: (s, m), each ``n`` values in (..., channels) order; advances the stream.
        ``units``: how many (mu, sigma) pairs the rows share (``channels``, or 1: one for every element);
        ``hold``: maps the draw's pairs to the ones used (a layer that holds them over steps)."""
        with self._fixed_mode():
            args = self._next(n, channels, n_mu, n_sigma, r_mu, r_sigma, units, hold)
            return self._kernel(0)(n, *args, dtype)

    def add_noise(self, a: torch.Tensor, n_mu: float, n_sigma: float, r_mu: float, r_sigma: float,
                  units: int | None = None, hold: Hold | None = None) -> torch.Tensor:
        """s a + m for ``a`` of shape (rows, C) in the draw's order, with the (s, m) that ``noise``
        would return for this draw; differentiable in a, advances the stream. One pass over a."""
        with self._fixed_mode():  # the arguments too: an inference tensor would be another variant
            args = self._next(a.numel(), a.shape[1], n_mu, n_sigma, r_mu, r_sigma, units, hold)
        return _Noisy.apply(a, self._kernel(1), args)

    def _kernel(self, which: int):
        return (_kernels() if self.compiled and self.device.type == "cpu" else (_elements, _apply))[which]

    def _fixed_mode(self):
        # One global state for every call: torch.compile guards on grad mode, inference mode and
        # autocast, and after 8 variants it silently runs the function eagerly (slower, and s a few
        # ulps off). Left to vary: the dtype and the thread count, a variant each.
        return _fixed_mode(self.device.type)

    def _next(self, n: int, channels: int, n_mu: float, n_sigma: float, r_mu: float, r_sigma: float,
              units: int | None = None, hold: Hold | None = None) -> tuple:
        """The next draw's kernel arguments, with its per-channel numbers."""
        if n >= CHANNELS_AT or self.draws >= 1 << (63 - ELEMENT_BITS):
            raise ValueError(f"a noise draw of {n} elements (draw {self.draws}) exceeds the counter's range")
        base = self._base(self.draws)
        self.draws += 1
        mu, sigma = _channel_numbers(base, channels if units is None else units, n_mu, n_sigma)
        mu, sigma = mu.to(self.device), sigma.to(self.device)
        if hold is not None:
            mu, sigma = hold(mu, sigma)
        return torch.tensor(base, device=self.device), _CONSTS, mu, sigma, float(r_mu), float(r_sigma)


@contextlib.contextmanager
def _fixed_mode(device_type: str):
    with torch.inference_mode(False), torch.no_grad(), torch.autocast(device_type, enabled=False):
        yield


Stream = CounterStream | torch.Generator


def noise_stream(rng: str, seed: int, device: torch.device) -> Stream:
    """The noise's stream for ``NoiseConfig.rng`` ("auto": counter on a CPU, torch's on a GPU)."""
    device = torch.device(device)
    if rng == "counter" or (rng == "auto" and device.type == "cpu"):
        return CounterStream(device).manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


def stream_like(stream: Stream, seed: int) -> Stream:
    """A fresh stream of the same kind as ``stream`` (another seed): evaluation's and the fixed probe
    batch's own noise, so that they never move the training stream."""
    if isinstance(stream, CounterStream):
        return CounterStream(stream.device, stream.compiled).manual_seed(seed)
    return torch.Generator(device=stream.device).manual_seed(seed)
