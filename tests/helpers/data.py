"""Data files for tests: a CIFAR-10 folder in the official layout, of random images."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ics_study.data import cifar10


def write_fake_cifar(root: Path, n: int = 20) -> Path:
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder
