"""scripts/reproduce.sh runs the whole campaign in the precision it is given, on any CPU (bf16 runs at
fp32's speed where the CPU lacks bf16 arithmetic: ics_study/train/precision.py). The ``ics-study``
it calls is a stand-in that logs its arguments."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _reproduce(tmp_path, **env):
    """Run reproduce.sh with a logging ``ics-study``; returns the process and the calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    cli = bin_dir / "ics-study"
    cli.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    cli.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("PRECISION", "RUNS_DIR", "EXTENSIONS", "JOBS")}
    environ.update(PATH=f"{bin_dir}:/usr/bin:/bin", **env)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), str(tmp_path / "data"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120)
    return proc, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(("env", "precision"), [({}, "bf16"), ({"PRECISION": "fp32"}, "fp32")])
def test_the_campaign_runs_every_sweep_in_its_precision(tmp_path, env, precision):
    proc, calls = _reproduce(tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls if c.startswith("train ")]
    vgg = [c for c in trains if "scale=cpu_small" in c]
    assert len(trains) == 11 and len(vgg) == 9  # the DLN sweeps run in fp32 whatever PRECISION says
    assert all(f"trainer.precision={precision}" in c for c in vgg)
    assert not any("trainer.precision" in c for c in trains if c not in vgg)
    sweeps = {c.split("hydra.sweep.dir=")[1].split()[0].rsplit("/", 1)[1] for c in trains}
    assert [c.split()[0] for c in calls if c.startswith("aggregate ")] == ["aggregate"] * len(sweeps) == ["aggregate"] * 11
    assert calls[-2].startswith("figures ") and calls[-1].startswith("report ")


def test_extensions_0_runs_the_paper_alone(tmp_path):
    proc, calls = _reproduce(tmp_path, EXTENSIONS="0")
    assert proc.returncode == 0, proc.stderr
    assert len([c for c in calls if c.startswith("train ")]) == 5 and calls[-1].startswith("report ")


@pytest.mark.parametrize(("env", "launched"), [({}, True), ({"JOBS": "1"}, False)])
def test_vgg_runs_go_two_at_a_time_on_half_the_cores_unless_jobs_is_1(tmp_path, env, launched):
    proc, calls = _reproduce(tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    vgg = [c.split() for c in calls if c.startswith("train ") and "scale=cpu_small" in c]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # nproc's count
    for args in vgg:
        assert ("launcher=local_parallel" in args and "hydra.launcher.n_jobs=2" in args
                and f"trainer.threads={threads}" in args) is launched
        assert launched or not any(a.startswith(("launcher=", "hydra.launcher.", "trainer.threads=")) for a in args)
    dln = [c for c in calls if c.startswith("train ") and "experiment=dln" in c]
    assert dln and not any("launcher=" in c for c in dln)  # the DLN sweeps: two processes of one thread already
