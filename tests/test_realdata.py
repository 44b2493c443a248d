"""Real CIFAR-10 (the shared JPEG re-encoded copy): the BN net trains clearly faster than the standard one."""

from __future__ import annotations

import pytest

from ics_study.data.cifar10 import load_cifar10
from ics_study.train import train

from .conftest import compose

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_loader_reads_the_real_copy(cifar_root):
    x_train, y_train, x_test, y_test = load_cifar10(cifar_root, download=False)
    assert x_train.shape == (50000, 3, 32, 32) and x_test.shape == (10000, 3, 32, 32)
    assert y_train.bincount().tolist() == [5000] * 10 and y_test.bincount().tolist() == [1000] * 10
    mean = x_train.float().mean(dim=(0, 2, 3)) / 255
    assert ((mean - __import__("torch").tensor([0.4914, 0.4822, 0.4465])).abs() < 0.01).all()


def test_bn_beats_standard_on_narrow_vgg16(cifar_root, tmp_path):
    common = ["model.width=0.25", "trainer.max_steps=500", "trainer.eval_every=500", "trainer.progress_bar=false",
              f"data.root={cifar_root}", "data.download=false", "trainer.device=cpu", "probe.every=250"]
    bn = train(compose(["model=vgg_bn", *common]), tmp_path / "bn")
    std = train(compose(["model=vgg", *common]), tmp_path / "std")
    print(f"\nreal data, VGG-16 w=1/4, 500 steps: BN train acc {bn['final']['train_acc']:.3f} test "
          f"{bn['final']['test_acc']:.3f} ({bn['train_images_per_s']:.0f} img/s) | standard train acc "
          f"{std['final']['train_acc']:.3f} test {std['final']['test_acc']:.3f} ({std['train_images_per_s']:.0f} img/s)")
    # the last batch's accuracy is noisy: compare the mean over the last 50 steps
    import pandas as pd

    def late_acc(d):
        m = pd.read_parquet(d / "metrics")
        return m[(m.metric == "train/acc") & (m.step > 450)].value.mean()

    assert late_acc(tmp_path / "bn") > late_acc(tmp_path / "std") + 0.15
    assert bn["final"]["test_acc"] > std["final"]["test_acc"]
