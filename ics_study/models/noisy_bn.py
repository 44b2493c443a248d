"""BatchNorm followed by the paper's injected noise (Algorithm 1, "noisy" BN of Figure 2).

At every training step, on the BN output a (after gamma and beta, before the ReLU):

    per channel j, fresh each step:   mu_j    ~ U(-n_mu, n_mu)      sigma_j ~ U(1, n_sigma)
    per element (sample, h, w):       m       ~ U(mu_j - r_mu, mu_j + r_mu)
                                      s       ~ N(sigma_j, r_sigma)
    output = s * a + m

The noise is non-zero-mean, non-unit-variance and changes every step, so the distribution of each
layer's input keeps moving ("internal covariate shift" in its plainest sense) while BN still does
its job underneath. Evaluation mode adds no noise.

All randomness comes from ``self.generator`` (set by ``models.set_noise_generator``): a counter-based
``CounterStream`` (noise_stream.py: every number of a draw in one fused pass; the default on a CPU)
or a ``torch.Generator`` (two random fills and a per-channel draw each for s and m; the default on a
GPU). Either way a run is reproducible from its seed, and a measurement replays a step's noise
exactly by saving and restoring the stream's state. The noise is drawn in the activation's
channels-last order (see ``_elementwise``), so a seed gives the same noise in either layout;
``scripts/bench.py noise`` times the two streams.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import NoiseConfig
from .noise_stream import CounterStream, Stream


class _Noise:
    """Algorithm 1's noise on a layer's output: what NoisyBatchNorm and the noise-only control share.
    Its state, set by ``_set_noise`` from the subclass's ``__init__``:"""

    n_mu: float  # the per-channel numbers' ranges (see the module's docstring)
    n_sigma: float
    r_mu: float  # the per-element numbers' spreads
    r_sigma: float
    generator: Stream | None  # the run's noise stream (noise_stream.py)
    noise_enabled: bool  # evaluation.py switches it off to re-estimate BN on clean activations

    def _set_noise(self, noise: NoiseConfig) -> None:
        self.n_mu, self.n_sigma = float(noise.n_mu), float(noise.n_sigma)
        self.r_mu, self.r_sigma = float(noise.r_mu), float(noise.r_sigma)
        self.generator = None
        self.noise_enabled = True

    def _noisy(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.noise_enabled:
            return a
        out = self.add_noise(a)
        return out if _in_noise_layout(a) else out.contiguous()  # an NCHW model stays NCHW

    @torch.compiler.disable  # as draw_noise
    def add_noise(self, a: torch.Tensor) -> torch.Tensor:
        """s * a + m, in the noise's (channels-last) layout. The counter stream draws and applies the
        noise in one pass over a; torch's generator draws s and m first (draw_noise)."""
        if isinstance(self.generator, CounterStream):
            rows = _in_draw_order(a).reshape(-1, a.shape[1])  # (rows, C): a view when channels-last
            out = self.generator.add_noise(rows, self.n_mu, self.n_sigma, self.r_mu, self.r_sigma)
            return _like(out.view(_elementwise_shape(a)), a)
        s, m = self.draw_noise(a)
        return torch.addcmul(m, a, s)  # s * a + m in one pass

    @torch.compiler.disable  # draws from an explicit stream: torch.compile cannot trace it, and
    # without this it recompiled the per-channel draw for every shape and range until its limit
    def draw_noise(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (s, m) that forward would draw for ``a`` now; advances the stream the same way."""
        if isinstance(self.generator, CounterStream):
            s, m = self.generator.noise(a.numel(), a.shape[1], self.n_mu, self.n_sigma, self.r_mu, self.r_sigma,
                                        a.dtype)
            return _like(s.view(_elementwise_shape(a)), a), _like(m.view(_elementwise_shape(a)), a)
        return self._scale_like(a), self._shift_like(a)

    def _channel_shape(self, a: torch.Tensor) -> tuple[int, ...]:
        return (1, a.shape[1]) + (1,) * (a.dim() - 2)

    def _uniform(self, shape, low, high, like: torch.Tensor) -> torch.Tensor:
        return torch.empty(shape, device=like.device, dtype=like.dtype).uniform_(low, high, generator=self.generator)

    def _scale_like(self, a: torch.Tensor) -> torch.Tensor:
        sigma = self._uniform(self._channel_shape(a), 1.0, self.n_sigma, a)  # per channel
        eps = _elementwise(a).normal_(0.0, self.r_sigma, generator=self.generator)
        return _like(eps, a).add_(sigma)  # per element, N(sigma_j, r_sigma)

    def _shift_like(self, a: torch.Tensor) -> torch.Tensor:
        mu = self._uniform(self._channel_shape(a), -self.n_mu, self.n_mu, a)  # per channel
        u = _elementwise(a).uniform_(-self.r_mu, self.r_mu, generator=self.generator)
        return _like(u, a).add_(mu)  # per element, U(mu_j +- r_mu)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_mu={self.n_mu}, n_sigma={self.n_sigma}, "
            f"r_mu={self.r_mu}, r_sigma={self.r_sigma}"
        ).lstrip(", ")


class NoisyBatchNorm(_Noise, nn.BatchNorm2d):
    """BN, then the noise (the paper's "noisy" BN)."""

    def __init__(self, num_features: int, noise: NoiseConfig, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self._set_noise(noise)

    def _check_input_dim(self, x: torch.Tensor) -> None:  # accept (N, C) and (N, C, H, W)
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._noisy(super().forward(x))


class NoiseOnly(_Noise, nn.Module):
    """The same noise on the conv output, with no BN: the paper's control ("model=vgg_noise"), which
    shows that the injected shift is large enough to stop the standard net from training."""

    def __init__(self, num_features: int, noise: NoiseConfig):
        super().__init__()
        self.num_features = num_features
        self._set_noise(noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {x.dim()}D")
        return self._noisy(x)


def noisy_layers(model: nn.Module) -> list[_Noise]:
    """The layers of ``model`` that add the noise, in module order (none in the standard and BN nets)."""
    return [m for m in model.modules() if isinstance(m, _Noise)]


# Per-element noise is drawn into a contiguous (N, H, W, C) buffer and viewed as (N, C, H, W): the
# channels-last layout the model runs in by default. Every operand of the noise then shares the
# activation's layout (a GPU reads them coalesced; an NCHW noise tensor next to an NHWC activation
# is read across strides, and was), a seed gives the same noise whatever ``trainer.channels_last``
# says, and the in-place fills (one pass each) run on contiguous memory.
def _elementwise_shape(a: torch.Tensor) -> tuple[int, ...]:
    return (a.shape[0], *a.shape[2:], a.shape[1]) if a.dim() == 4 else tuple(a.shape)


def _elementwise(a: torch.Tensor) -> torch.Tensor:
    return torch.empty(_elementwise_shape(a), device=a.device, dtype=a.dtype)


def _in_draw_order(a: torch.Tensor) -> torch.Tensor:
    """``a`` viewed in the noise's (N, H, W, C) order (the inverse of ``_like``)."""
    return a.permute(0, 2, 3, 1) if a.dim() == 4 else a


def _like(buffer: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return buffer.permute(0, 3, 1, 2) if a.dim() == 4 else buffer


def _in_noise_layout(a: torch.Tensor) -> bool:
    return a.dim() != 4 or a.is_contiguous(memory_format=torch.channels_last)
