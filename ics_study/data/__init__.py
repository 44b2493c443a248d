"""Datasets by name: ``build_data(cfg.data, seed, device)`` -> ``DeviceData``."""

from __future__ import annotations

import torch

from ..config import DataConfig
from .cifar10 import load_cifar10
from .linear_regression import make_linear_regression
from .loader import DeviceData
from .synthetic import make_synthetic

DATASETS = ("cifar10", "synthetic", "linear_regression")


def build_data(cfg: DataConfig, seed: int, device: torch.device) -> DeviceData:
    if cfg.name == "cifar10":
        tensors = load_cifar10(cfg.root, cfg.download)
    elif cfg.name == "linear_regression":
        tensors = make_linear_regression(cfg.num_train, cfg.num_test, cfg.features, seed)
    elif cfg.name == "synthetic":
        tensors = make_synthetic(cfg.num_train, cfg.num_test, cfg.image_size, cfg.noise_std, seed)
    else:
        raise ValueError(f"unknown dataset {cfg.name!r}")
    return DeviceData.build(*tensors, device=device, normalize=cfg.normalize)


__all__ = ["DATASETS", "DeviceData", "build_data"]
