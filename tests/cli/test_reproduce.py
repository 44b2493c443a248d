"""scripts/reproduce.sh's gate on emulated bf16: on a machine without bf16 arithmetic of its own the
campaign's bf16 runs are 11x slower than fp32, so the script stops before training, in one line,
unless PRECISION=fp32 or BF16_EMULATED=1. The ``ics-study`` it calls is a stand-in that logs its
arguments; the interpreter its first line names answers the script's question about bf16."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ics_study.train.precision import bf16_is_native
from ics_study.train.process import pick_device
from tests.conftest import REPO


def _reproduce(tmp_path, native: bool | None, **env):
    """Run reproduce.sh with a logging ``ics-study``; ``native`` fakes the bf16 answer (None: ask torch)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    interpreter = sys.executable
    if native is not None:  # answers the script's `-c` question, runs anything else with the real python
        interpreter = bin_dir / "python-shim"
        interpreter.write_text(f'#!/bin/bash\n[ "$1" = -c ] && exit {0 if native else 1}\nexec {sys.executable} "$@"\n')
        interpreter.chmod(0o755)
    log = tmp_path / "calls.log"
    cli = bin_dir / "ics-study"
    cli.write_text(f"#!{interpreter}\nimport sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    cli.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in ("PRECISION", "BF16_EMULATED", "RUNS_DIR")}
    environ.update(PATH=f"{bin_dir}:/usr/bin:/bin", **env)
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), str(tmp_path / "data"), str(out)],
                          capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls, out


def test_without_native_bf16_the_campaign_stops_before_training_in_one_line(tmp_path):
    proc, calls, out = _reproduce(tmp_path, native=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "no native bf16" in lines[0] and "PRECISION=fp32" in lines[0] and "BF16_EMULATED=1" in lines[0]
    assert calls == [] and not out.exists()  # nothing trained, no folder made


@pytest.mark.parametrize(("native", "env", "precision"), [(False, {"PRECISION": "fp32"}, "fp32"),
                                                           (False, {"BF16_EMULATED": "1"}, "bf16"),
                                                           (True, {}, "bf16")])
def test_fp32_native_bf16_or_consent_run_the_whole_campaign(tmp_path, native, env, precision):
    proc, calls, _ = _reproduce(tmp_path, native=native, **env)
    assert proc.returncode == 0, proc.stderr
    trains = [c for c in calls if c.startswith("train ")]
    vgg = [c for c in trains if "scale=cpu_small" in c]
    assert len(trains) == 11 and len(vgg) == 9  # the DLN sweeps run in fp32 whatever PRECISION says
    assert all(f"trainer.precision={precision}" in c for c in vgg)
    assert calls[-2].startswith("figures ") and calls[-1].startswith("report ")


def test_the_gate_asks_the_real_interpreter(tmp_path):
    """Without a fake: the script's own question, through the interpreter that runs ics-study, agrees
    with torch here (so a broken import in it would stop every campaign, or none)."""
    proc, calls, _ = _reproduce(tmp_path, native=None)
    assert proc.returncode == (0 if bf16_is_native(pick_device("auto")) else 2), proc.stderr
    assert bool(calls) == (proc.returncode == 0)
