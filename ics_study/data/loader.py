"""The whole dataset as tensors on the training device, and batches cut from them (airbench-style).

No DataLoader, no per-sample Python: the uint8 images live on the device; each epoch is one
seeded permutation; a batch is an index into it, converted to float, normalised per channel and
(optionally) augmented as whole tensors on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..config import AugmentConfig


@dataclass
class DeviceData:
    x_train: torch.Tensor  # uint8 N x 3 x H x W, on the device
    y_train: torch.Tensor  # int64 N
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor  # 1 x 3 x 1 x 1, float, in [0, 1] units
    std: torch.Tensor
    channels_last: bool = False  # hand images to the model in NHWC layout

    @classmethod
    def build(cls, x_train, y_train, x_test, y_test, device, normalize: bool = True) -> DeviceData:
        if normalize and x_train.dtype == torch.uint8:  # images: per-channel training-set statistics [I]
            pixels = x_train.to(torch.float64).div_(255.0)
            mean = pixels.mean(dim=(0, 2, 3), keepdim=True).float()
            std = pixels.std(dim=(0, 2, 3), keepdim=True).float()
        else:
            mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
        to = lambda t: t.to(device)  # noqa: E731
        return cls(to(x_train), to(y_train), to(x_test), to(y_test), to(mean), to(std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:  # features (regression): used as they are
            return x.float()
        images = (x.float().div_(255.0) - self.mean) / self.std
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def train_batches(self, batch_size: int, generator: torch.Generator, drop_last: bool = True,
                      augment: AugmentConfig | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (images, labels) batches; a fresh permutation from ``generator`` every epoch."""
        n = len(self.y_train)
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training images")
        while True:
            order = torch.randperm(n, generator=generator).to(self.y_train.device)
            stop = n - n % batch_size if drop_last else n
            for i in range(0, stop, batch_size):
                idx = order[i : i + batch_size]
                images = self.normalize(self.x_train[idx])
                if augment is not None and (augment.crop or augment.flip):
                    images = augment_batch(images, augment, generator)
                yield images, self.y_train[idx]

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.y_test), batch_size):
            yield self.normalize(self.x_test[i : i + batch_size]), self.y_test[i : i + batch_size]


def augment_batch(images: torch.Tensor, aug: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding, after normalisation, i.e. padding with the mean) and flip."""
    n, _, h, w = images.shape
    if aug.flip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    if aug.crop:
        p = aug.crop_padding
        padded = torch.nn.functional.pad(images, (p, p, p, p))
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(images.device)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        chan = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, chan, rows, cols]
    return images
