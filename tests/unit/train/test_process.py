"""The process-wide facts a run records: which machine ran it."""

from __future__ import annotations

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


def test_hardware_names_the_first_cpu_with_its_family_model_and_threads(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    monkeypatch.setattr(process, "CPUINFO", str(info))
    threads = torch.get_num_threads()
    assert process.hardware(torch.device("cpu")) == f"AMD EPYC (family 25 model 1, {threads} threads)"


def test_hardware_without_proc_cpuinfo_falls_back_to_the_platform(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "CPUINFO", str(tmp_path / "absent"))
    monkeypatch.setattr(process.platform, "processor", lambda: "arm")
    assert process.hardware(torch.device("cpu")) == f"arm ({torch.get_num_threads()} threads)"
