"""BatchNorm followed by the paper's injected noise (Algorithm 1, "noisy" BN of Figure 2).

At every training step, on the BN output a (after gamma and beta, before the ReLU):

    per channel j, fresh each step:   mu_j    ~ U(-n_mu, n_mu)      sigma_j ~ U(1, n_sigma)
    per element (sample, h, w):       m       ~ U(mu_j - r_mu, mu_j + r_mu)
                                      s       ~ N(sigma_j, r_sigma)
    output = s * a + m

The noise is non-zero-mean, non-unit-variance and changes every step, so the distribution of each
layer's input keeps moving ("internal covariate shift" in its plainest sense) while BN still does
its job underneath. Evaluation mode adds no noise.

All randomness comes from ``self.generator`` (set by ``vgg.set_noise_generator``) so a run is
reproducible from its seed and a measurement can replay a step's noise exactly by saving and
restoring the generator's state.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import NoiseConfig


class NoisyBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features: int, noise: NoiseConfig, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.n_mu, self.n_sigma = float(noise.n_mu), float(noise.n_sigma)
        self.r_mu, self.r_sigma = float(noise.r_mu), float(noise.r_sigma)
        self.generator: torch.Generator | None = None

    def _check_input_dim(self, x: torch.Tensor) -> None:  # accept (N, C) and (N, C, H, W)
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = super().forward(x)
        if not self.training:
            return a
        return a * self._scale_like(a) + self._shift_like(a)

    def draw_noise(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (s, m) that forward would draw for ``a`` now; advances the generator the same way."""
        return self._scale_like(a), self._shift_like(a)

    def _channel_shape(self, a: torch.Tensor) -> tuple[int, ...]:
        return (1, a.shape[1]) + (1,) * (a.dim() - 2)

    def _uniform(self, shape, low, high, like: torch.Tensor) -> torch.Tensor:
        u = torch.rand(shape, generator=self.generator, device=like.device, dtype=like.dtype)
        return low + (high - low) * u

    def _scale_like(self, a: torch.Tensor) -> torch.Tensor:
        sigma = self._uniform(self._channel_shape(a), 1.0, self.n_sigma, a)  # per channel
        eps = torch.randn(a.shape, generator=self.generator, device=a.device, dtype=a.dtype)
        return sigma + self.r_sigma * eps  # per element, N(sigma_j, r_sigma)

    def _shift_like(self, a: torch.Tensor) -> torch.Tensor:
        mu = self._uniform(self._channel_shape(a), -self.n_mu, self.n_mu, a)  # per channel
        return self._uniform(a.shape, -self.r_mu, self.r_mu, a) + mu  # per element, U(mu_j +- r_mu)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, n_mu={self.n_mu}, n_sigma={self.n_sigma}, "
            f"r_mu={self.r_mu}, r_sigma={self.r_sigma}"
        )
