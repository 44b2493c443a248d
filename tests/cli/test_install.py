"""A non-editable install (the built wheel) runs the CLI from any directory: configs ship inside it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_from_another_directory(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("ics_study-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the wheel's copy shadows the editable checkout
    where = subprocess.run([sys.executable, "-c", "import ics_study.configs as c; print(c.__file__)"], env=env,
                           cwd=elsewhere, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    job = subprocess.run([sys.executable, "-m", "ics_study.cli", "train", "--cfg", "job"], env=env, cwd=elsewhere,
                         capture_output=True, text=True)
    assert job.returncode == 0, job.stderr
    assert "name: vgg_bn" in job.stdout and "max_steps: 15000" in job.stdout
    info = subprocess.run([sys.executable, "-m", "ics_study.cli", "train", "--info", "searchpath"], env=env,
                          cwd=elsewhere, capture_output=True, text=True)
    assert "pkg://ics_study.configs" in info.stdout
    for preset in ("smoke", "cpu_small"):
        assert subprocess.run([sys.executable, "-m", "ics_study.cli", "train", f"experiment={preset}", "--cfg", "job"],
                              env=env, cwd=elsewhere, capture_output=True).returncode == 0
