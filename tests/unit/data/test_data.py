"""CIFAR-10 loading (safe unpickling, validation, download and extraction), synthetic data, batching."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ics_study.config import AugmentConfig
from ics_study.data import cifar10
from ics_study.data.loader import DeviceData, augment_batch, channel_statistics
from ics_study.data.synthetic import make_synthetic
from ics_study.errors import UserError
from tests.helpers.data import write_fake_cifar


def test_reads_the_python_version_layout(tmp_path):
    write_fake_cifar(tmp_path)
    x_train, y_train, x_test, y_test = cifar10.load_cifar10(tmp_path, download=False)
    assert x_train.shape == (100, 3, 32, 32) and x_train.dtype == torch.uint8
    assert y_train.shape == (100,) and x_test.shape == (20, 3, 32, 32) and y_test.dtype == torch.int64
    # root may also be the cifar-10-batches-py folder itself
    assert cifar10.load_cifar10(tmp_path / cifar10.FOLDER, download=False)[0].shape == (100, 3, 32, 32)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    with pytest.raises(UserError, match="data_batch_3.*refusing to load 'posix.system'|data_batch_3.*system"):
        cifar10.load_cifar10(tmp_path, download=False)
    assert not marker.exists()


def test_truncated_and_misshapen_files_are_named(tmp_path):
    folder = write_fake_cifar(tmp_path)
    data = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="data_batch_2"):
        cifar10.load_cifar10(tmp_path, download=False)
    (folder / "data_batch_2").write_bytes(data)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5}))
    with pytest.raises(UserError, match="test_batch.*N x 3072"):
        cifar10.load_cifar10(tmp_path, download=False)
    (folder / "data_batch_4").unlink()
    with pytest.raises(UserError, match="data_batch_4"):
        cifar10.load_cifar10(tmp_path, download=False)


def test_missing_folder_offline_says_how_to_set_root(tmp_path):
    with pytest.raises(UserError, match="data.root"):
        cifar10.load_cifar10(tmp_path / "nowhere", download=False)


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "cifar.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_download_checks_md5_and_extracts(tmp_path):
    src = write_fake_cifar(tmp_path / "src")
    members = {f"{cifar10.FOLDER}/{p.name}": p.read_bytes() for p in src.iterdir()}
    archive = _archive(tmp_path, members)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with pytest.raises(UserError, match="MD5"):
        cifar10.download_cifar10(tmp_path / "bad", url=archive.as_uri(), md5="0" * 32)
    assert not (tmp_path / "bad" / cifar10.FOLDER).exists()
    cifar10.download_cifar10(tmp_path / "good", url=archive.as_uri(), md5=md5)
    assert (tmp_path / "good" / cifar10.FOLDER / "test_batch").exists()


def test_download_failure_is_one_line(tmp_path):
    with pytest.raises(UserError, match="could not download.*data.root"):
        cifar10.download_cifar10(tmp_path, url=(tmp_path / "absent.tar.gz").as_uri())


def test_extraction_refuses_members_outside_the_target(tmp_path):
    archive = _archive(tmp_path, {"ok.txt": b"x", "../escaped.txt": b"evil"})
    with pytest.raises(UserError, match="escaped"):
        cifar10.safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_synthetic_is_deterministic_and_balanced():
    a = make_synthetic(200, 50, seed=1)
    b = make_synthetic(200, 50, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (200, 3, 32, 32) and a[0].dtype == torch.uint8
    assert torch.bincount(a[1]).tolist() == [20] * 10


def test_channel_statistics_equal_the_direct_float64_computation():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (500, 3, 8, 8), generator=g, dtype=torch.uint8)
    images[:, 1] //= 3  # channels with different statistics
    images[:, 2] = 255 - images[:, 2] // 7
    mean, std = channel_statistics(images)
    pixels = images.to(torch.float64) / 255.0
    assert mean.shape == std.shape == (1, 3, 1, 1) and mean.dtype == std.dtype == torch.float32
    torch.testing.assert_close(mean, pixels.mean(dim=(0, 2, 3), keepdim=True).float(), rtol=0, atol=1e-7)
    torch.testing.assert_close(std, pixels.std(dim=(0, 2, 3), keepdim=True).float(), rtol=0, atol=1e-7)
    assert not torch.allclose(std[0, 0], std[0, 1])


def test_batches_cover_each_epoch_once_and_are_seeded():
    x, y, xt, yt = make_synthetic(100, 10)
    data = DeviceData.build(x, y, xt, yt, "cpu")
    norm = data.normalize(data.x_train)
    assert torch.allclose(norm.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(norm.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    batches = data.train_batches(32, seed=0, drop_last=True)
    epoch = [next(batches) for _ in range(3)]  # 3 full batches of 32, 4 images dropped
    seen = torch.cat([b[0] for b in epoch]).reshape(96, -1)
    assert len({tuple(r.tolist()) for r in seen.round(decimals=4)}) == 96
    again = data.train_batches(32, seed=0)
    assert torch.equal(next(again)[0], epoch[0][0])


def test_batch_stream_resumes_exactly_mid_epoch():
    x, y, xt, yt = make_synthetic(100, 10)
    data = DeviceData.build(x, y, xt, yt, "cpu")
    aug = AugmentConfig(crop=True, flip=True)
    full = data.train_batches(16, seed=3, augment=aug)
    expected = [next(full) for _ in range(15)]  # 6 batches per epoch: crosses two epoch boundaries
    first = data.train_batches(16, seed=3, augment=aug)
    for _ in range(8):
        next(first)
    resumed = data.train_batches(16, seed=3, augment=aug)
    resumed.load_state_dict(first.state_dict())
    for want in expected[8:]:
        got = next(resumed)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_augmentation_shapes_and_effects():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    flipped = augment_batch(images, AugmentConfig(flip=True), torch.Generator().manual_seed(1))
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flipped, images))
    cropped = augment_batch(images, AugmentConfig(crop=True, crop_padding=2), torch.Generator().manual_seed(2))
    assert cropped.shape == images.shape and not torch.equal(cropped, images)
