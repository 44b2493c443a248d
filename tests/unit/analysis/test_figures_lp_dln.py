"""The l_p and deep-linear-network figures from tiny sweeps made here: every panel drawn, the DLN's
cosine row at every lr."""

from __future__ import annotations

import pytest

from ics_study.analysis.figures import FIGURES
from ics_study.analysis.figures.style import RC
from ics_study.analysis.runs import find_runs
from ics_study.train import train
from tests.conftest import TINY16, compose

# slow: 4 DLN and 4 tiny VGG runs with the landscape, ~40 s alone; `make test-all` (CI) runs it
pytestmark = pytest.mark.slow

RUNS = [(norm, lr) for norm in ("none", "batch") for lr in (1e-6, 1e-7)]


@pytest.fixture(scope="module")
def dln_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("dln")
    for i, (norm, lr) in enumerate(RUNS):  # the full 25 layers (the figure's ICS layers #9, #17), 16 steps
        train(compose(["experiment=dln", f"model.norm={norm}", f"optim.lr={lr}", "trainer.max_steps=16",
                       "trainer.log_every=4", "trainer.progress_bar=false", "logger.tensorboard=false",
                       "ics.every=4", "landscape.every=4", "sharpness.enabled=false", "probe.every=8"]),
              root / f"{i}_{norm}")
    return root


def test_the_dln_figure_shows_the_cosines_at_every_lr_and_the_rest_at_the_papers(dln_sweep):
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig = FIGURES["fig_dln"](find_runs([dln_sweep]))
        by_title = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
        for layer in (9, 17):
            cos = by_title[f"ICS, layer #{layer}, every lr"]
            labels = sorted(line.get_label() for line in cos.get_lines())
            assert labels == ["DLN + BatchNorm, lr 1e-06", "DLN + BatchNorm, lr 1e-07", "DLN, lr 1e-06", "DLN, lr 1e-07"]
            assert {line.get_linestyle() for line in cos.get_lines()} == {"-", "--"}  # one style per lr
            assert all(-1 <= y <= 1 for line in cos.get_lines() for y in line.get_ydata())
            norm = by_title[f"ICS, layer #{layer}"]
            assert len(norm.get_lines()) == 2  # ||G - G'||: lr 1e-6 only, with and without BN
        loss = next(ax for ax in fig.axes if ax.get_ylabel() == "training loss")
        assert len(loss.get_lines()) == 2
        title = fig._suptitle.get_text()
        assert "lr 1e-06" in title and "1e-07" in title
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend and not any("lr" in t for t in legend)  # the lr-1e-6 rows name no lr: the title does
        plt.close("all")


@pytest.fixture(scope="module")
def lp_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("lp")
    for i, model in enumerate(("vgg", "vgg_bn", "vgg_lp1", "vgg_lpinf")):
        train(compose([*TINY16, f"model={model}", "landscape.enabled=true", "landscape.every=4"]), root / f"{i}_{model}")
    return root


def test_the_lp_figure_draws_accuracy_smoothness_and_each_norms_histograms(lp_sweep):
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        fig = FIGURES["fig_lp"](find_runs([lp_sweep]))
        acc = next(ax for ax in fig.axes if "training accuracy" in ax.get_ylabel())
        assert len(acc.get_lines()) == 4  # the l_p nets beside BN and the standard net
        ridges = [ax for ax in fig.axes if ax.patches]
        assert [ax.get_title() for ax in ridges] == ["Standard + L1, layer #11", r"Standard + L$\infty$, layer #11"]
        assert len({ax.get_xlim() for ax in ridges}) == 1  # one value axis: widths compare by eye
        plt.close("all")
