"""The noisy BN's random numbers from a counter-based generator: one vectorised pass, no state.

Every random number of Algorithm 1 is a pure function of (stream seed, draw, element): draw ``p`` is
the p-th noisy-layer forward of the stream, element ``e`` the index in the activation's (N, H, W, C)
order (the per-channel draws take indices past every element's). Its 64 random bits are splitmix64's
output at position ``(p << 36) + e`` of the stream (Steele, Lea and Flood 2014: the mixing function
of Java's SplittableRandom, BigCrush-clean), computed with vectorised integer operations:

    h   = mix64(key + position * GOLDEN)                    key = mix64((seed + 1) * GOLDEN)
    u   = (h >> 40 + 0.5) / 2^24,   v = ((h >> 8) & (2^24 - 1) + 0.5) / 2^24      two uniforms in (0, 1)

- per channel j: mu_j = n_mu (2u - 1), sigma_j = 1 + (n_sigma - 1) v;
- per element: m = mu_j + r_mu (2u - 1); s = sigma_j + r_sigma z, z standard normal by Box-Muller
  from the v of element k and of element k + ceil(n/2) (cos to the first, sin to the second).

Uniforms sit on the midpoints of a 2^24 lattice (fp32's resolution on [0.5, 1)): symmetric, never 0
or 1, so the log is finite. The distribution is Algorithm 1's as read in PROTOCOL.md; the tests check
its statistics layer by layer (tests/test_noisy_bn.py).

Why not torch's CPU generator: it is serial (Mersenne twister), 2.9 ns a number, and the noise needs
two numbers per element of every BN output: 65 ms of a 177 ms fp32 step of VGG-16 at width 1/4 on the
2-core AMD EPYC, 88 ms of 155 in bf16 (docs/performance.md). Here the whole draw is one fused,
multi-threaded kernel when torch.compile can build it (Inductor's C++ backend: a compiler and the
Python headers; ~3 s once per process with a warm cache, ~13 s cold), and the same operations run
eagerly otherwise (slower than torch's generator, with one log line). Compiled and eager give the
same integers and the same m, and values of s that differ by a few ulps (transcendental functions
fused differently); between thread counts s may differ in its last bit (the compiled loop is split
among the threads). So a seed gives one trajectory per kernel and thread count, as the convolutions
do anyway; ``tests/test_noise_stream.py`` checks all of it.

State is two integers (seed, next draw): ``get_state``/``set_state`` put a step's noise back for ICS
and the landscape exactly as a torch.Generator's state does, and a checkpoint stores 16 bytes.
On a GPU the run keeps torch's own Philox generator (already counter-based and parallel, and
registered with CUDA graphs), so nothing changes there (``NoiseConfig.rng``).
"""

from __future__ import annotations

import logging
import math

import torch

from ..errors import UserError

log = logging.getLogger("ics_study.noise")

# splitmix64's constants, as signed int64 (torch has no uint64 arithmetic)
_GOLDEN, _MIX1, _MIX2 = (c - (1 << 64) if c >= 1 << 63 else c
                         for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
NOISE_RNGS = ("auto", "counter", "generator")  # NoiseConfig.rng
ELEMENT_BITS = 36  # elements per draw < 2^35 (2^35 and up: the per-channel numbers); draws < 2^28
CHANNELS_AT = 1 << (ELEMENT_BITS - 1)
_LATTICE = 2.0**-24


def _wrap(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _mix_int(z: int) -> int:  # mix64 on a Python int: the stream key
    z &= (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return _wrap(z ^ (z >> 31))


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * c[1]
    z = (z ^ _shr(z, 27)) * c[2]
    return z ^ _shr(z, 31)


def _uniforms(position: torch.Tensor, base: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent uniforms in (0, 1) (24-bit midpoints) for each position."""
    h = _mix(base + position * c[0], c)
    u = (_shr(h, 40).to(torch.float32) + 0.5) * _LATTICE
    v = ((_shr(h, 8) & 0xFFFFFF).to(torch.float32) + 0.5) * _LATTICE
    return u, v


def _elements(n: int, base: torch.Tensor, c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
              r_mu: float, r_sigma: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, m) for ``n`` elements in (..., C) order, C = len(mu): one pass, fused when compiled."""
    half = (n + 1) // 2
    k = torch.arange(half, device=mu.device, dtype=torch.int64)
    u_lo, v_lo = _uniforms(k, base, c)
    u_hi, v_hi = _uniforms(k + half, base, c)
    radius = torch.sqrt(-2.0 * torch.log(v_lo))  # Box-Muller: (v_lo, v_hi) -> two independent normals
    angle = (2.0 * math.pi) * v_hi
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:n].view(-1, mu.numel())
    u = torch.cat([u_lo, u_hi])[:n].view(-1, mu.numel())
    s = sigma + r_sigma * z  # (rows, C): broadcast over rows, vectorised along C
    m = mu + r_mu * (2.0 * u - 1.0)
    return s.to(dtype).view(-1), m.to(dtype).view(-1)


_compiled = None  # the compiled _elements, built on first use; False once it failed


def _element_kernel():
    global _compiled
    if _compiled is None:
        quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found": true, and noise here
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            kernel = torch.compile(_elements, dynamic=True)
            _check(kernel)
            _compiled = kernel
        except Exception as e:  # no compiler, no Python headers, an unsupported platform: run eagerly
            log.warning("the noise kernel could not be compiled (%s); drawing it eagerly, which is slower",
                        str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
            _compiled = False
        finally:
            quiet.setLevel(level)
    return _compiled or _elements


def _check(kernel) -> None:
    """Build the kernel now (so that a failure shows here) and insist that it gives eager's numbers on
    a draw long enough for its vectorised loops and their tails. Inductor's on-disk cache does not
    tell apart code built under another ATEN_CPU_CAPABILITY on the same machine: such code gave wrong
    numbers (and once corrupted the heap) when reused. Here it is refused and the eager kernel runs."""
    c = _consts(torch.device("cpu"))
    n, channels = 3 * 1367, 3  # odd: the Box-Muller pairing's tail
    args = (torch.tensor(12345), c, torch.linspace(-0.5, 0.5, channels), torch.linspace(1, 1.25, channels), 0.1, 0.1,
            torch.float32)
    got, want = kernel(n, *args), _elements(n, *args)
    if not (torch.allclose(got[0], want[0], rtol=0, atol=1e-5) and torch.allclose(got[1], want[1], rtol=0, atol=1e-6)):
        raise RuntimeError("the compiled noise kernel disagrees with the eager one (a stale Inductor cache? "
                           "delete TORCHINDUCTOR_CACHE_DIR, by default /tmp/torchinductor_$USER)")


_CONSTS: dict[torch.device, torch.Tensor] = {}


def _consts(device: torch.device) -> torch.Tensor:
    if device not in _CONSTS:
        _CONSTS[device] = torch.tensor([_GOLDEN, _MIX1, _MIX2], dtype=torch.int64, device=device)
    return _CONSTS[device]


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

    def _base(self, draw: int) -> torch.Tensor:
        return torch.tensor(_wrap(self._key + (draw << ELEMENT_BITS) * 0x9E3779B97F4A7C15), device=self.device)

    def noise(self, n: int, channels: int, n_mu: float, n_sigma: float, r_mu: float, r_sigma: float,
              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The next draw: (s, m), each ``n`` values in (..., channels) order; advances the stream."""
        if n >= CHANNELS_AT or self.draws >= 1 << (63 - ELEMENT_BITS):
            raise ValueError(f"a noise draw of {n} elements (draw {self.draws}) exceeds the counter's range")
        draw = self.draws
        self.draws += 1
        kernel = _element_kernel() if self.compiled and self.device.type == "cpu" else _elements
        # One global state for every call: torch.compile guards on grad mode, inference mode and
        # autocast, and after 8 variants it silently runs the function eagerly (slower, and s a few
        # ulps off). Left to vary: the dtype and the thread count, a variant each.
        with torch.inference_mode(False), torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            base, c = self._base(draw), _consts(self.device)
            u, v = _uniforms(torch.arange(CHANNELS_AT, CHANNELS_AT + channels, device=self.device), base, c)
            mu, sigma = n_mu * (2.0 * u - 1.0), 1.0 + (n_sigma - 1.0) * v  # per channel, eager (C numbers)
            return kernel(n, base, c, mu, sigma, float(r_mu), float(r_sigma), dtype)


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
