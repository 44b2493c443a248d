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
            mean, std = channel_statistics(x_train)
        else:
            mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
        to = lambda t: t.to(device)  # noqa: E731
        return cls(to(x_train), to(y_train), to(x_test), to(y_test), to(mean), to(std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:  # features (regression): used as they are
            return x.float()
        return self.in_model_layout((x.float().div_(255.0) - self.mean) / self.std)

    def in_model_layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def train_batches(self, batch_size: int, seed: int, drop_last: bool = True,
                      augment: AugmentConfig | None = None) -> BatchStream:
        """Endless (images, labels) batches: a fresh seeded permutation every epoch; resumable."""
        return BatchStream(self, batch_size, seed, drop_last, augment)

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.y_test), batch_size):
            yield self.normalize(self.x_test[i : i + batch_size]), self.y_test[i : i + batch_size]


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (unbiased) of uint8 N x C x H x W images in [0, 1]
    units, each 1 x C x 1 x 1 float32. Computed exactly from each channel's 256-bin histogram:
    the same numbers as float64 ``mean``/``std`` over all pixels, 5x faster (0.2 s for CIFAR-10's
    training set on 2 cores, against 1.0 s and a 1.2 GB float64 copy)."""
    counts = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256)
                          for c in range(images.shape[1])]).double()  # C x 256
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum(1, keepdim=True)
    mean = (counts * values).sum(1, keepdim=True) / n
    var = (counts * (values - mean) ** 2).sum(1, keepdim=True) / (n - 1)
    shape = (1, images.shape[1], 1, 1)
    return mean.float().view(shape), var.sqrt().float().view(shape)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor (drawn by a CPU generator) onto ``device`` without a host sync.

    Random numbers come from CPU generators so that a seed gives the same batches on every device.
    A plain copy from pageable memory makes the host wait until the GPU has run everything queued
    (each epoch's permutation, three times a step with augmentation); from pinned memory it is
    queued like a kernel (PyTorch keeps the pinned block until the copy has run)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def augment_batch(images: torch.Tensor, aug: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding, after normalisation, i.e. padding with the mean) and flip."""
    n, _, h, w = images.shape
    if aug.flip:
        flip = to_device(torch.rand(n, generator=generator) < 0.5, images.device)
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    if aug.crop:
        p = aug.crop_padding
        padded = torch.nn.functional.pad(images, (p, p, p, p))
        dx = to_device(torch.randint(0, 2 * p + 1, (n,), generator=generator), images.device)
        dy = to_device(torch.randint(0, 2 * p + 1, (n,), generator=generator), images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        chan = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, chan, rows, cols]
    return images


class BatchStream:
    """Training batches in a seeded order, with a state that a checkpoint can save and restore.

    The order generator draws one permutation per epoch; augmentation draws from its own generator.
    The state is (order generator at the start of the epoch, batches taken in the epoch,
    augmentation generator), which is enough to continue the stream exactly."""

    def __init__(self, data: DeviceData, batch_size: int, seed: int, drop_last: bool, augment: AugmentConfig | None):
        n = len(data.y_train)
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training images")
        self.data, self.batch_size, self.augment = data, batch_size, augment
        self.order_gen = torch.Generator().manual_seed(seed * 1000 + 2)
        self.aug_gen = torch.Generator().manual_seed(seed * 1000 + 6)
        self.batches_per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        self.epoch_start = self.order_gen.get_state()
        self.position = self.batches_per_epoch  # start a new epoch on the first call
        self.order: torch.Tensor | None = None

    def _new_epoch(self) -> None:
        self.epoch_start = self.order_gen.get_state()
        self.order = to_device(torch.randperm(len(self.data.y_train), generator=self.order_gen), self.data.y_train.device)
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position >= self.batches_per_epoch:
            self._new_epoch()
        i = self.position * self.batch_size
        idx = self.order[i : i + self.batch_size]
        self.position += 1
        images = self.data.normalize(self.data.x_train[idx])
        if self.augment is not None and (self.augment.crop or self.augment.flip):
            images = self.data.in_model_layout(augment_batch(images, self.augment, self.aug_gen))  # crops come out NCHW
        return images, self.data.y_train[idx]

    def state_dict(self) -> dict:
        return {"epoch_start": self.epoch_start, "position": self.position, "augment": self.aug_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order_gen.set_state(state["epoch_start"])
        self._new_epoch()
        self.position = int(state["position"])
        self.aug_gen.set_state(state["augment"])
