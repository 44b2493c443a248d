"""The fast paths stay correct: compiled == eager, bf16 and fp32 both train, the benchmark runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ics_study.config import ModelConfig
from ics_study.models import build_model
from ics_study.train import train

from .conftest import REPO


@pytest.mark.slow
def test_compiled_and_eager_models_agree_on_cpu():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="t", depth=11, width=0.125, norm="batch")).eval()
    x = torch.randn(4, 3, 32, 32)
    compiled = torch.compile(model, dynamic=False)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fp32_and_bf16_training_both_run(tiny_cfg, tmp_path, precision):
    summary = train(tiny_cfg(f"trainer.precision={precision}", "model=vgg_bn_noise"), tmp_path)
    assert summary["status"] == "completed" and np.isfinite(summary["final"]["train_loss"])


@pytest.mark.parametrize("model", ["vgg_bn", "vgg_bn_noise"])  # the noise is drawn the same in both layouts
def test_channels_last_gives_the_same_training_numbers(tiny_cfg, tmp_path, model):
    import pandas as pd

    for layout in ("true", "false"):
        train(tiny_cfg(f"trainer.channels_last={layout}", f"model={model}", "trainer.max_steps=3"), tmp_path / layout)
    a, b = (pd.read_parquet(tmp_path / d / "metrics") for d in ("true", "false"))
    loss = lambda m: m[m.metric == "train/loss"].sort_values("step").value.to_numpy()  # noqa: E731
    # same maths, only the summation order differs: equal at step 1, then rounding compounds (lr 0.1)
    np.testing.assert_allclose(loss(a)[0], loss(b)[0], rtol=1e-5)
    np.testing.assert_allclose(loss(a)[1], loss(b)[1], rtol=1e-3)


def test_compiled_training_runs(tiny_cfg, tmp_path):
    summary = train(tiny_cfg("trainer.compile=true", "trainer.max_steps=3", "model=vgg_bn"), tmp_path)
    assert summary["status"] == "completed"


@pytest.mark.slow
def test_benchmark_scripts_run_in_quick_mode():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "reference (DataLoader, eager fp32)" in out.stdout and "ics-study bf16 + probes" in out.stdout
    for row in ("reference (DataLoader, eager fp32)", "ics-study fp32 + probes", "ics-study bf16 + probes"):
        cells = _row(out.stdout, row)
        assert float(cells[0]) > 0 and float(cells[3]) > 0  # whole-run and steady images/s
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_probes.py"), "--width", "0.0625",
                          "--steps", "3", "--repeats", "1", "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    cells = _row(out.stdout, "probes on")
    assert float(cells[0]) > 0 and float(cells[3]) > 0  # whole-run and steady images/s


def _row(stdout: str, name: str) -> list[str]:
    """The cells after the name of the markdown table row that starts with ``name``."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"| {name} |"))
    return [cell.strip() for cell in line.split("|")[2:-1]]


def _median_ms(stdout: str, row: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith(f"| {row}"))
    return float(line.split("|")[2].split()[0])


@pytest.mark.slow
def test_host_benchmarks_run_and_report_positive_times():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_probe_host.py"), "--width", "0.0625",
                          "--steps", "200", "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _median_ms(out.stdout, "flushes") > 0 and _median_ms(out.stdout, "all probe bookkeeping") > 0
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_loop_host.py"), "--steps", "120", "--repeats", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _median_ms(out.stdout, "probes off") > 0 and _median_ms(out.stdout, "probes on") > 0


@pytest.mark.slow
def test_noise_benchmark_runs_and_reports_both_forms():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_noise.py"), "--width", "0.0625",
                          "--batch", "16", "--steps", "2", "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for row in ("BN", "noisy BN, now", "noisy BN, before", "now", "before"):
        assert _median_ms(out.stdout, row) > 0
