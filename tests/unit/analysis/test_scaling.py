"""The exponent s of settled curvature ~ (2/lr)^s (``scaling.py``) against tables whose exponent is
known by construction, and the report and figure that state it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ics_study.analysis.scaling import BETA, GRADIENT, TOP, eos_runs, exponent

LRS = (0.02, 0.05, 0.1, 0.2)


def _runs(slopes: dict[int, float], variant: str = "vgg_bn", lrs=LRS, **override) -> pd.DataFrame:
    """One run per (seed, lr) with beta = (seed + 1) x (2/lr)^slope exactly; ``override[(seed, lr)]``
    replaces a run's fields."""
    rows = []
    for seed, s in slopes.items():
        for lr in lrs:
            row = {"variant": variant, "lr": lr, "seed": seed, "status": "completed", "final_train_acc": 0.7,
                   BETA: (seed + 1) * (2 / lr) ** s, TOP: 3 * (2 / lr) ** s, GRADIENT: (2 / lr) ** s / 2,
                   "path": f"{variant}/{seed}/{lr}"}
            rows.append({**row, **override.get("runs", {}).get((seed, lr), {})})
    return pd.DataFrame(rows)


def test_the_exponent_is_each_seed_s_log_log_slope_with_the_seeds_mean_and_range():
    e = exponent(_runs({0: 0.7, 1: 0.9, 2: 1.1}), "vgg_bn", BETA)
    assert (e.mean, e.low, e.high, e.seeds) == (pytest.approx(0.9), pytest.approx(0.7), pytest.approx(1.1), 3)
    assert e.lrs == LRS and e.left_out == ()
    assert e.describe() == "s = 0.90 (0.70-1.10, 3 seeds, lr 0.02-0.2)"
    flat = exponent(_runs({0: 0.0}), "vgg_bn", BETA)  # curvature the lr does not set
    assert flat.mean == pytest.approx(0.0, abs=1e-12) and flat.describe() == "s = 0.00 (1 seed, lr 0.02-0.2)"


def test_an_lr_where_a_run_stayed_at_chance_or_diverged_is_left_out_for_every_seed():
    wild = {BETA: 1e-3}  # a value that would bend every fit it entered
    runs = _runs({0: 1.0, 1: 1.0, 2: 1.0}, runs={
        (0, 0.2): {"final_train_acc": 0.1, **wild},  # never trained: its curvature is the initialisation's
        (1, 0.02): {"status": "diverged", BETA: np.nan, "final_train_acc": np.nan}})
    e = exponent(runs, "vgg_bn", BETA)
    assert e.mean == pytest.approx(1.0) and e.lrs == (0.05, 0.1) and e.seeds == 3
    assert e.left_out == ((0.02, "1 of 3 diverged"), (0.2, "1 of 3 at chance"))
    assert e.describe().endswith("left out: lr 0.02 (1 of 3 diverged), lr 0.2 (1 of 3 at chance))")


def test_fewer_than_two_learning_rates_give_no_exponent():
    assert exponent(_runs({0: 1.0}, lrs=(0.1,)), "vgg_bn", BETA) is None
    assert exponent(_runs({0: 1.0}), "vgg", BETA) is None  # no runs of that network
    assert exponent(_runs({0: 1.0}).drop(columns=TOP), "vgg_bn", TOP) is None  # probe off: no column


def test_the_edge_of_stability_runs_are_those_with_the_curvature_probe():
    probed = _runs({0: 1.0})
    paper = probed[probed.lr == 0.1].assign(**{TOP: np.nan, BETA: 99.0, "path": "paper/0"})  # same training, no probe
    other = _runs({0: 1.0}, variant="vgg_bn_noise")
    runs = eos_runs(pd.concat([paper, probed, other], ignore_index=True))
    assert set(runs.variant) == {"vgg_bn"} and len(runs) == len(LRS) and not (runs[BETA] == 99.0).any()


def test_the_report_states_each_network_s_exponent_as_a_statistic():
    from ics_study.analysis.report import smoothness_paragraph

    runs = pd.concat([_runs({0: 0.9, 1: 1.0, 2: 1.1}), _runs({0: 0.4, 1: 0.5, 2: 0.6}, variant="vgg")])
    claims = pd.DataFrame([{"id": f"ext.eos.vgg_bn.beta_near_edge.lr{lr:g}", "lr": lr, "verdict": "holds",
                            "mean_a": 0.7} for lr in LRS])
    text = smoothness_paragraph(claims, runs)
    assert "(1: set by the learning rate; 0: not by it at all; a statistic, not a verdict)" in text
    assert ("effective beta-smoothness: Standard s = 0.50 (0.40-0.60, 3 seeds, lr 0.02-0.2); Standard + BatchNorm "
            "s = 1.00 (0.90-1.10, 3 seeds, lr 0.02-0.2). top Hessian eigenvalue: Standard s = 0.50") in text
    assert text.endswith("curvature along the gradient: Standard s = 0.50 (0.40-0.60, 3 seeds, lr 0.02-0.2); "
                         "Standard + BatchNorm s = 1.00 (0.90-1.10, 3 seeds, lr 0.02-0.2).")
    assert smoothness_paragraph(claims) == smoothness_paragraph(claims, runs.iloc[:0]) != text


def test_the_figure_writes_each_network_s_exponent_beside_its_settled_values():
    from ics_study.analysis.figures.extensions import fig_eos
    from ics_study.analysis.figures.style import color
    from ics_study.analysis.runs import Runs

    runs = pd.concat([_runs({0: 0.9, 1: 1.1}), _runs({0: 0.5, 1: 0.5}, variant="vgg")], ignore_index=True)
    fig = fig_eos(Runs(runs))
    right = [ax for ax in fig.axes if ax.get_title().startswith("settled vs 2 / lr")]
    assert len(right) == 3 and right[0] is fig.axes[len(LRS)]  # one row per quantity
    for ax, value in zip(right, ("1.00", "1.00", "1.00")):
        texts = [t.get_text() for t in ax.texts]
        colours = [t.get_color() for t in ax.texts]
        assert set(zip(texts, colours)) == {("Standard: s = 0.50", color("vgg")),
                                            (f"Standard + BatchNorm: s = {value}", color("vgg_bn"))}, texts
