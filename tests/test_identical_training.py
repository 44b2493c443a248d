"""Measurement and recording changes must not change training: the three networks' metrics, per-step
channel moments, probe summaries and final weights against a fixture recorded by the code before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.golden import MODELS, trajectory

FIXTURE = Path(__file__).parent / "fixtures" / "golden_trajectory.npz"


def test_training_is_identical_to_the_recorded_trajectory(tmp_path):
    want = dict(np.load(FIXTURE))
    got = trajectory(tmp_path)
    # bit-identical on the kind of CPU the fixture was recorded on; oneDNN picks other kernels on
    # another instruction set, where only rounding may differ
    same_cpu = str(want["cpu_capability"]) == torch.backends.cpu.get_cpu_capability()
    for model in MODELS:
        # new measurements add metrics (e.g. a noisy net's extra test readings); training's must not change
        keep = np.isin(got[f"{model}/metrics/name"], want[f"{model}/metrics/name"])
        for key in ("name", "step", "value"):
            got[f"{model}/metrics/{key}"] = got[f"{model}/metrics/{key}"][keep]
        for key in ("metrics/name", "metrics/step", "activations/stat", "activations/key"):
            np.testing.assert_array_equal(got[f"{model}/{key}"], want[f"{model}/{key}"], err_msg=f"{model} {key}")
        for key in ("metrics/value", "activations/value", "weights_sum"):
            if same_cpu:
                np.testing.assert_array_equal(got[f"{model}/{key}"], want[f"{model}/{key}"], err_msg=f"{model} {key}")
            else:
                np.testing.assert_allclose(got[f"{model}/{key}"], want[f"{model}/{key}"], rtol=1e-4, atol=1e-6,
                                           err_msg=f"{model} {key}")
        if same_cpu:
            assert str(got[f"{model}/weights_sha256"]) == str(want[f"{model}/weights_sha256"]), model


def test_every_output_is_identical_to_the_recorded_one(tmp_path):
    """Every table, the summary (timing aside) and every part of the checkpoint of the three networks,
    with ICS and the landscape on, against digests recorded before the training loop was decomposed
    (tests/golden.py: outputs). Bit-identical; on another kind of CPU oneDNN's kernels round
    differently and the trajectory test above is the check."""
    import json

    import pytest

    from tests.golden import outputs

    want = json.loads((FIXTURE.parent / "golden_outputs.json").read_text())
    if want["cpu_capability"] != torch.backends.cpu.get_cpu_capability():
        pytest.skip(f"fixture recorded on {want['cpu_capability']}, this CPU is {torch.backends.cpu.get_cpu_capability()}")
    got = outputs(tmp_path)
    for model in MODELS:
        differ = sorted(k for k in want[model] if got[model].get(k) != want[model][k])
        assert not differ and got[model].keys() == want[model].keys(), f"{model}: {differ or 'different outputs'}"
