"""Host memory on CPU runs: freed large blocks are reused instead of page-faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ics_study.train.host_memory import keep_freed_memory
from tests.conftest import REPO

# In a fresh process (the setting is process-wide): minor page faults of the last 10 of 30 cycles of
# allocating, filling and freeing a 64 MB tensor, with glibc's defaults and after keep_freed_memory()
# (glibc may take a few cycles to find a freed block that fits an aligned request; measured: 4-8).
PROBE = """
import resource, torch
from ics_study.train.host_memory import keep_freed_memory
def faults():
    counts = []
    for _ in range(30):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 2**20)  # 64 MB, freed at once
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sum(counts[-10:])
default = faults()
took = keep_freed_memory()
print(default, took, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_large_blocks_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    default, took, kept = out.stdout.split()
    default, kept = int(default), int(kept)
    assert took == "True"
    if default < 10_000:
        pytest.skip(f"this kernel maps large blocks with huge pages ({default} faults for 640 MB): nothing to save")
    assert default >= 0.9 * 10 * (64 * 2**20 // 4096)  # glibc's default: every 4 KB page faulted in again
    assert kept < default / 100  # reused: (nearly) no page faults


def test_training_on_cpu_switches_it_on_and_the_off_switch_is_honoured(tiny_cfg, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("ics_study.train.process.keep_freed_memory", lambda: calls.append(1) or True)
    from ics_study.train import train

    train(tiny_cfg("trainer.max_steps=2", "trainer.reuse_host_memory=false"), tmp_path / "off")
    assert calls == []
    train(tiny_cfg("trainer.max_steps=2"), tmp_path / "on")
    assert calls == [1]


def test_it_is_harmless_to_call_twice():
    assert keep_freed_memory() == keep_freed_memory()
