"""Figures never average across learning rates or over diverged runs (a mixed-lr sweep, one run
marked diverged)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from ics_study.analysis.figures import FIGURES
from ics_study.analysis.figures.style import RC
from ics_study.analysis.runs import find_runs
from ics_study.train import train
from tests.conftest import TINY16, compose

MIXED = [("vgg_bn", 0.1, 0), ("vgg_bn", 0.1, 1), ("vgg_bn", 0.5, 0), ("vgg", 0.1, 0), ("vgg_bn_noise", 0.1, 0),
         ("vgg_bn_noise", 0.02, 0)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    for i, (model, lr, seed) in enumerate(MIXED):
        train(compose([*TINY16, f"model={model}", f"optim.lr={lr}", f"seed={seed}", "landscape.enabled=true",
                       "landscape.every=4"]), root / f"{i}_{model}")
    # a diverged standard run at lr 0.1 (seed 1): a copy of seed 0 whose summary says so
    bad = root / "9_vgg_diverged"
    shutil.copytree(root / "3_vgg", bad)
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["seed"] = 1
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps({**summary, "status": "diverged", "diverged_at": 9}))
    return root


def _legend(fig):
    """The figure's one legend, under its panels."""
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_lines_are_per_lr_and_diverged_runs_apart(mixed):
    import matplotlib.pyplot as plt

    runs = find_runs([mixed])
    with plt.rc_context(RC):
        fig1 = FIGURES["fig1"](runs)
        ax = fig1.axes[0]
        legend = _legend(fig1)
        assert "Standard + BatchNorm, lr 0.1 (2 seeds)" in legend and "Standard + BatchNorm, lr 0.5" in legend
        assert "Standard, lr 0.1" in legend and "Standard, lr 0.1 (1 run), diverged" in legend
        # the standard mean line is the finished run alone, not averaged with the diverged copy
        acc = runs.metric("train/acc")
        alone = acc[(acc.variant == "vgg") & (acc.status == "completed")].sort_values("step").value.rolling(
            25, center=True, min_periods=1).mean().to_numpy()
        line = next(li for li in ax.get_lines() if li.get_label() == "Standard, lr 0.1")
        np.testing.assert_allclose(line.get_ydata(), alone)
        fig4 = FIGURES["fig4"](runs)
        assert "lr 0.1" in fig4._suptitle.get_text() and "lr 0.02, 0.5 not shown" in fig4._suptitle.get_text()
        bands = [t.get_text() for t in fig4.legends[0].get_texts()]  # one legend, under the panels
        assert "Standard + BatchNorm (2 seeds)" in bands and "Standard" in bands
        assert any("diverged" in t for t in bands) and not any("0.5" in t for t in bands)
        fig2 = FIGURES["fig2"](runs)
        assert not any("0.02" in t or "0.5" in t for t in _legend(fig2))
        assert "lr 0.02, 0.5 not shown" in fig2._suptitle.get_text()
        plt.close("all")


def test_a_seed_trained_in_two_sweeps_is_drawn_once_from_the_run_that_measured_more(mixed, tmp_path):
    """The edge-of-stability sweep retrains lr 0.1 (landscape and curvature on, no activation probes),
    on another machine: the paper figures and the results table draw the paper sweep's run, never
    an average of both."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from ics_study.analysis.report import results_table

    root = tmp_path / "runs"
    shutil.copytree(mixed, root / "paper")
    again = root / "a_edge_of_stability" / "0_vgg_bn"  # sorts before the paper sweep
    shutil.copytree(mixed / "0_vgg_bn", again)
    cfg = yaml.safe_load((again / "config.yaml").read_text())
    cfg["probe"]["enabled"] = False
    (again / "config.yaml").write_text(yaml.safe_dump(cfg))
    shutil.rmtree(again / "activations", ignore_errors=True)
    metrics = pd.read_parquet(again / "metrics")
    shutil.rmtree(again / "metrics")
    (again / "metrics").mkdir()
    metrics.assign(value=metrics.value * 10).to_parquet(again / "metrics" / "part-000001.parquet")
    runs = find_runs([root])
    assert len(runs.table[runs.table.variant == "vgg_bn"]) == 4  # both are found ...
    with plt.rc_context(RC):
        fig4 = FIGURES["fig4"](runs)
        assert "Standard + BatchNorm (2 seeds)" in [t.get_text() for t in fig4.legends[0].get_texts()]
        beta = runs.metric("landscape/beta_smoothness")
        paper = beta[(beta.variant == "vgg_bn") & (beta.lr == 0.1) & ~beta.run.str.contains("edge")]
        want = paper.groupby("step").value.mean().to_numpy()
        line = next(li for li in fig4.axes[2].get_lines() if li.get_label().startswith("Standard + BatchNorm"))
        np.testing.assert_allclose(line.get_ydata(), want)  # ... the paper sweep's seeds are drawn
        plt.close("all")
    bn = results_table(runs.table).set_index(["variant", "lr"]).loc[("vgg_bn", 0.1)]
    assert bn.seeds == 2 and bn.auc_mean <= 1  # the copy's train-curve area is 10x
