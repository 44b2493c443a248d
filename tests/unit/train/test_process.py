"""The process-wide facts a run records: which machine ran it."""

from __future__ import annotations

import pytest
import torch

from ics_study.train import process

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu avx2

processor\t: 1
cpu family\t: 26
model\t\t: 2
model name\t: Other CPU
"""


@pytest.fixture
def threads():
    """Sets torch's thread count for a test and restores it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_hardware_names_the_first_cpu_with_its_family_model_and_threads(tmp_path, monkeypatch, threads):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(process, "CPUINFO", str(info))
    threads(2)
    assert process.hardware(torch.device("cpu")) == "AMD EPYC (family 25 model 1, 2 threads)"
    threads(1)
    assert process.hardware(torch.device("cpu")) == "AMD EPYC (family 25 model 1, 1 thread)"


def test_hardware_without_proc_cpuinfo_falls_back_to_the_platform(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(process, "CPUINFO", str(tmp_path / "absent"))
    monkeypatch.setattr(process.platform, "processor", lambda: "arm")
    threads(2)
    assert process.hardware(torch.device("cpu")) == "arm (2 threads)"
