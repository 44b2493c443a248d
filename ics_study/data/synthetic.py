"""CIFAR-shaped data with no files, for tests and smoke runs.

Each class has a fixed random template image (smooth colour blobs drawn from the seed); a sample is
its class template plus independent Gaussian pixel noise, clipped to uint8. The task is learnable
(a small VGG reaches high accuracy in a few hundred steps) but not trivial at high ``noise_std``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_synthetic(
    num_train: int, num_test: int, image_size: int = 32, noise_std: float = 48.0, seed: int = 0, classes: int = 10
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(10_007 + seed)
    coarse = torch.rand(classes, 3, 4, 4, generator=g) * 255.0
    templates = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % classes
        labels = labels[torch.randperm(n, generator=g)]
        noise = torch.randn(n, 3, image_size, image_size, generator=g) * noise_std
        images = (templates[labels] + noise).round().clamp(0, 255).to(torch.uint8)
        return images, labels

    return (*draw(num_train), *draw(num_test))
