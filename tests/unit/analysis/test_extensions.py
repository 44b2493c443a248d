"""Beyond the paper (issue 29): the presets make the variants the claims name, the report shows the
extension claims apart, and each figure plots what a hand-made per-run table says."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ics_study.analysis.aggregate import variant_of
from ics_study.analysis.claims import CLAIMS
from ics_study.analysis.figures import FIGURES
from ics_study.analysis.figures.extensions import (
    NORMALISERS,
    fig_noise_granularity,
    fig_noise_strength,
    fig_normalisers,
)
from ics_study.analysis.runs import Runs, find_runs
from ics_study.compose import compose
from tests.conftest import REPO

PRESETS = ("paper", "noise_strength", "noise_granularity", "normalisers", "edge_of_stability", "dln")


def preset_runs(name: str) -> set[tuple[str, float]]:
    """(variant, lr) of every run of a preset's sweep (seeds left out), as the report names them."""
    params = yaml.safe_load((REPO / "configs" / "experiment" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    grid = {k: str(v).split(",") for k, v in params.items() if k != "seed"}
    out = set()
    for values in itertools.product(*grid.values()):
        cfg = compose([f"experiment={name}", *(f"{k}={v}" for k, v in zip(grid, values))])
        out.add((variant_of(dataclasses.asdict(cfg.model)), cfg.optim.lr))
    return out


def test_every_noise_option_has_a_column_type():
    from ics_study.analysis.aggregate import NOISE_DTYPES
    from ics_study.config import ABLATIONS, NoiseConfig

    assert set(NOISE_DTYPES) == set(ABLATIONS) and all(hasattr(NoiseConfig, k) for k in ABLATIONS)


def test_every_extension_claim_names_runs_that_the_presets_make():
    made = set().union(*(preset_runs(p) for p in PRESETS))
    assert {("vgg_bn_noise[strength=0]", 0.1), ("vgg_bn_noise[granularity=layer,redraw_every=0]", 0.1),
            ("vgg_bn_noise[redraw_every=100]", 0.1), ("vgg_gn", 0.5), *((v, 0.1) for v in NORMALISERS)} <= made
    beyond = [c for c in CLAIMS if c.kind == "extension" or c.id.startswith("ext.")]
    assert len(beyond) > 60
    for c in beyond:
        assert {(v, c.lr) for v in (c.a, c.b, c.ref) if v} <= made, c.id
        assert c.figure in FIGURES


def _table(rows: list[dict]) -> pd.DataFrame:
    base = {"lr": 0.1, "status": "completed", "path": "-", "noise_strength": np.nan, "noise_granularity": None,
            "noise_redraw_every": np.nan}
    return pd.DataFrame([{**base, **r} for r in rows])


def _reference_rows(stat: dict) -> list[dict]:
    return [{"variant": v, "seed": s, **{k: x + 0.01 * s for k, x in vals.items()}}
            for v, vals in stat.items() for s in range(3)]


def _seed_dots(ax):
    from matplotlib.collections import PathCollection

    return [c for c in ax.collections if isinstance(c, PathCollection)]


def test_the_strength_figure_plots_each_setting_s_seeds_and_mean():
    rows = _reference_rows({"vgg": {"auc_train_acc": 0.3}, "vgg_bn": {"auc_train_acc": 0.6}})
    for k, auc in ((0.0, 0.6), (1.0, 0.55), (4.0, 0.2)):
        rows += [{"variant": "vgg_bn_noise" + (f"[strength={k:g}]" if k != 1 else ""), "seed": s, "noise_strength": k,
                  "noise_granularity": "channel", "noise_redraw_every": 1, "auc_train_acc": auc + 0.01 * s,
                  "steps_to_50": 100.0 * (s + 1), "steps_to_80": np.nan if k == 4 and s else 900.0,
                  "final_test_acc_last3": 0.5, "final_test_acc_recalibrated": 0.7 - 0.1 * k, "max_steps": 1000}
                 for s in range(3)]
    # the granularity sweep's runs are noisy BN at k = 1 too, but not Algorithm 1: not more seeds of k = 1
    rows += [{"variant": "vgg_bn_noise[granularity=layer]", "seed": s, "noise_strength": 1.0, "noise_granularity": "layer",
              "noise_redraw_every": 1, "auc_train_acc": 0.9, "steps_to_50": 100.0, "steps_to_80": np.nan,
              "final_test_acc_last3": 0.5, "final_test_acc_recalibrated": 0.7, "max_steps": 1000} for s in range(3)]
    fig = fig_noise_strength(Runs(_table(rows)))
    from matplotlib.text import Annotation

    unreached = [t.get_text() for t in fig.axes[2].texts if isinstance(t, Annotation)]
    assert unreached == ["2/3"]  # k = 4: two of its three seeds never reached 80%
    assert any("Standard: 3/3 seeds never got there" in t.get_text() for t in fig.axes[2].texts)  # no steps_to_80
    ax = fig.axes[0]
    means = ax.lines[-1]  # the line through the means over seeds
    np.testing.assert_allclose(means.get_xdata(), [0, 1, 2])  # evenly spaced, labelled with k
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "4"]
    np.testing.assert_allclose(means.get_ydata(), [0.61, 0.56, 0.21])
    assert fig.axes[1].get_ylim()[0] == 0 and fig.axes[2].get_ylim()[0] == 0  # steps from 0
    assert fig.axes[2].get_ylim()[1] > 1000  # the "never got there" marks above the last step, not on seeds
    recalibrated = fig.axes[4]  # the noisy nets' test accuracy with clean BN statistics, beside "as trained"
    assert "re-estimated" in recalibrated.get_title() and "as trained" in fig.axes[3].get_title()
    np.testing.assert_allclose(recalibrated.lines[-1].get_ydata(), [0.7, 0.6, 0.3])
    assert not any(line.get_linestyle() == "--" for line in recalibrated.lines)  # BN, standard: never re-estimated
    refs = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--")
    np.testing.assert_allclose(refs, [0.31, 0.61])  # the standard net's and BN's means


def test_the_granularity_figure_has_a_column_per_granularity_and_a_series_per_time():
    rows = []
    for g, every in itertools.product(("channel", "layer", "position"), (1, 100, 0)):
        rows += [{"variant": f"vgg_bn_noise[g={g},t={every}]", "seed": s, "noise_strength": 1.0, "noise_granularity": g,
                  "noise_redraw_every": every, "auc_train_acc": {"channel": 0.5, "layer": 0.4, "position": 0.3}[g]
                  + {1: 0.0, 100: 0.01, 0: 0.02}[every], "steps_to_50": 300.0, "final_test_acc_last3": 0.5}
                 for s in range(3)]
    fig = fig_noise_granularity(Runs(_table(rows)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["channel", "layer", "position"]
    labels = ax.get_legend_handles_labels()[1]
    assert [x for x in labels if x.startswith("(mu")] == [f"(mu, sigma) {t}" for t in
                                                          ("redrawn every step", "redrawn every 100 steps", "held for the run")]
    got = sorted(round(float(c.get_offsets()[0][1]), 3) for c in _seed_dots(ax))
    assert got[0] == 0.3 and got[-1] == 0.52  # position/every step's first seed ... channel/held's first seed
    # without the per-channel held runs (a separate sweep), each time keeps its legend entry
    partial = [r for r in rows if r["noise_granularity"] != "channel" or r["noise_redraw_every"] == 1]
    labels = fig_noise_granularity(Runs(_table(partial))).axes[0].get_legend_handles_labels()[1]
    assert len([x for x in labels if x.startswith("(mu")]) == 3


def test_the_normaliser_figure_has_one_column_per_normaliser_after_bn_and_standard():
    stats = {"auc_train_acc": 0.5, "settled/landscape/beta_smoothness": 10.0, "shift/pre_norm/w1_lag": 0.1,
             "mean/ics/layer05/l2_diff": 1.0, "mean/ics/layer10/l2_diff": 1.0, "mean/ics/layer05/cosine": 0.9,
             "mean/ics/layer10/cosine": 0.9, "final_test_acc_last3": 0.6}
    rows = _reference_rows({v: dict(stats) for v in ["vgg", "vgg_bn", *NORMALISERS[:3]]})
    rows[-1]["settled/landscape/beta_smoothness"] = 99.0  # the last seed of the third normaliser
    fig = fig_normalisers(Runs(_table(rows)))
    beta = fig.axes[6]
    assert [t.get_text() for t in beta.get_xticklabels()] == ["Standard", "Standard + BatchNorm", "LayerNorm",
                                                               "GroupNorm", "WS + GroupNorm"]
    assert beta.get_yscale() == "log" and max(float(c.get_offsets()[:, 1].max()) for c in _seed_dots(beta)) == 99.0


def test_a_normaliser_whose_runs_diverged_is_named_and_drawn_only_in_the_area():
    """Its runs have a train-curve area (aggregate._area) and no other value: the area panel draws
    its seeds, the others draw nothing there (no "never reached" mark), and its name says why."""
    stats = {"auc_train_acc": 0.5, "settled/landscape/beta_smoothness": 10.0, "shift/pre_norm/w1_lag": 0.1,
             "mean/ics/layer05/l2_diff": 1.0, "mean/ics/layer10/l2_diff": 1.0, "mean/ics/layer05/cosine": 0.9,
             "mean/ics/layer10/cosine": 0.9, "final_test_acc_last3": 0.6}
    rows = _reference_rows({v: dict(stats) for v in ["vgg", "vgg_bn"]})
    rows += [{"variant": "vgg_bn_running", "seed": s, "status": "diverged", "auc_train_acc": 0.08,
              **{k: np.nan for k in stats if k != "auc_train_acc"}} for s in range(3)]
    fig = fig_normalisers(Runs(_table(rows)))
    area, beta = fig.axes[0], fig.axes[6]
    assert beta.get_xticklabels()[-1].get_text().endswith("(3/3 diverged)")
    assert any(np.allclose(c.get_offsets()[:, 1], 0.08) for c in _seed_dots(area))
    assert len(_seed_dots(beta)) == 2 and not beta.texts  # BN's and the standard net's seeds only


@pytest.mark.parametrize("figure", [fig_noise_strength, fig_noise_granularity, fig_normalisers])
def test_without_their_runs_the_extension_figures_say_which_preset_makes_them(figure):
    from ics_study.analysis.figures.paper import MissingRuns

    with pytest.raises(MissingRuns, match="experiment=(noise_strength|noise_granularity|normalisers)"):
        figure(Runs(_table(_reference_rows({"vgg": {"auc_train_acc": 0.3}, "vgg_bn": {"auc_train_acc": 0.6}}))))


def test_the_report_shows_the_extension_claims_in_their_own_section(tmp_path):
    from ics_study.analysis.report import ReportData
    from ics_study.analysis.report_md import render

    cl = pd.DataFrame([{"id": i, "kind": k, "figure": "fig1", "claim": i.upper(), "paper": "-", "statistic": "s",
                        "lr": 0.1, "rule": "r", "evidence": "e", "verdict": v, "ordering": "", "note": ""}
                       for i, k, v in (("p", "paper", "reproduced"), ("x", "extension", "does not hold"))])
    runs = pd.DataFrame({"data": ["cifar10"], "width": [0.25], "max_steps": [10], "precision": ["bf16"],
                         "path": [str(tmp_path / "run")], "variant": ["vgg"], "status": ["completed"]})
    text = render(ReportData(pd.DataFrame(columns=["variant", "lr", "seeds", "diverged", "test_acc_recalibrated_mean"]),
                             cl, runs, []))
    assert "1 reproduced (and 0 checks of our implementation and 1 questions beyond the paper, not counted)" in text
    before, beyond = text.split("## Beyond the paper")
    assert "| X (lr 0.1)" in beyond and "| X (lr 0.1)" not in before and "Never counted" in beyond
    assert "Where our runs and the paper disagree" not in text  # an extension is no disagreement with the paper


@pytest.fixture(scope="module")
def eos_sweep(tmp_path_factory):
    """The edge-of-stability preset, tiny: both networks at two learning rates, two seeds, 30 steps."""
    from ics_study.train import train

    root = tmp_path_factory.mktemp("eos")
    for i, (model, lr, seed) in enumerate(itertools.product(("vgg", "vgg_bn"), (0.05, 0.1), (0, 1))):
        cfg = compose(["experiment=edge_of_stability", f"model={model}", f"optim.lr={lr}", f"seed={seed}",
                       "data=synthetic", "data.num_train=512", "data.num_test=256", "trainer.max_steps=30",
                       "trainer.eval_every=30", "model.width=0.125", "model.depth=11", "sharpness.every=5",
                       "sharpness.iterations=5", "landscape.every=5", "trainer.progress_bar=false",
                       "logger.tensorboard=false"])
        train(cfg, root / f"{i}_{model}_lr{lr}_seed{seed}")
    return root


@pytest.mark.slow  # eight short trainings: ~40 s
def test_the_edge_of_stability_ratios_equal_a_direct_computation(eos_sweep):
    """settled top eigenvalue x lr / 2, from the runs' own metrics tables, as the claims read it."""
    runs = find_runs([eos_sweep]).table
    assert len(runs) == 8
    for row in runs.itertuples():
        m = pd.read_parquet(f"{row.path}/metrics")
        top = m[(m.metric == "sharpness/top_eigenvalue") & (m.step > 3)]  # after 10% of 30 steps
        assert sorted(top.step) == [5, 10, 15, 20, 25, 30]
        assert runs.loc[row.Index, "settled/sharpness/top_over_2_lr"] == pytest.approx(top.value.mean() * row.lr / 2)
        along = m[(m.metric == "sharpness/gradient_curvature") & (m.step > 3)]
        assert runs.loc[row.Index, "settled/sharpness/gradient_curvature_over_2_lr"] == pytest.approx(
            along.value.mean() * row.lr / 2)


@pytest.mark.slow  # eight short trainings: ~40 s
def test_the_edge_of_stability_figure_has_a_panel_per_lr_with_the_2_over_lr_line(eos_sweep):
    from ics_study.analysis.figures.extensions import fig_eos

    fig = fig_eos(find_runs([eos_sweep]))
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles[:3]] == ["lr 0.05", "lr 0.1", "settled vs 2 / lr"]
    for lr, title in ((0.05, titles[0]), (0.1, titles[1])):  # a network whose every run ended at chance is named
        for model, name in (("vgg", "Standard"), ("vgg_bn", "Standard + BatchNorm")):
            final = [json.loads(p.read_text())["final"]["train_acc"] for p in eos_sweep.glob(f"*_{model}_lr{lr}_*/summary.json")]
            stuck = sum(a < 0.2 for a in final)
            assert len(final) == 2 and (f"{name}: {stuck}/2 at chance" in title) == (stuck > 0), (title, final)
    assert [fig.axes[i].get_ylabel() for i in (0, 1, 3)] == ["effective $\\beta$-smoothness", "", "top Hessian eigenvalue"]
    edge = [line.get_ydata()[0] for line in fig.axes[3].lines if line.get_label() == "2 / lr"]
    assert edge == [pytest.approx(40.0)]  # 2 / 0.05
    versus = fig.axes[5]  # top eigenvalue after the transient against 2/lr, one line per network
    x = sorted({float(v) for line in versus.lines if line.get_linestyle() == "-" for v in line.get_xdata()})
    assert x == pytest.approx([20.0, 40.0])


def test_the_smoothness_paragraph_says_what_the_edge_of_stability_verdicts_say():
    from ics_study.analysis.report import smoothness_paragraph

    def claims(verdicts):
        return pd.DataFrame([{"id": f"ext.eos.vgg_bn.beta_near_edge.lr{lr:g}", "lr": lr, "verdict": v,
                              "mean_a": 0.5 + lr} for lr, v in verdicts.items()] + [{"id": "fig1.bn_faster", "lr": 0.1, "verdict": "reproduced"}])

    tracks = smoothness_paragraph(claims({0.02: "holds", 0.1: "holds"}))
    assert "is within a factor 2 of 2/lr in every seed at lr 0.02 (0.52 x 2/lr), 0.1 (0.6 x 2/lr)." in tracks
    assert "tracks 2/lr" in tracks
    mixed = smoothness_paragraph(claims({0.02: "holds", 0.1: "does not hold", 0.2: "inconclusive"}))
    assert ("more than a factor 2 from 2/lr in every seed at lr 0.1 (0.6 x 2/lr); undecided against a factor 2 of "
            "2/lr at lr 0.2 (0.7 x 2/lr)") in mixed and "not set by the learning rate alone" in mixed
    one = smoothness_paragraph(claims({0.1: "holds"}))  # one lr: near 2/lr there, no tracking shown
    assert "At every learning rate" not in one and "One learning rate cannot show" in one and "none" not in one
    both = smoothness_paragraph(pd.concat([claims({0.1: "holds"}), pd.DataFrame(
        [{"id": "ext.eos.vgg.beta_near_edge.lr0.1", "lr": 0.1, "verdict": "holds", "mean_a": 1.5},
         {"id": "ext.eos.std_top_above_edge.lr0.1", "lr": 0.1, "verdict": "inconclusive"}])]))
    assert "The standard net's is within a factor 2 of 2/lr in every seed at lr 0.1 (1.5 x 2/lr)." in both
    assert both.endswith("is undecided against it at lr 0.1.") and "stays below" not in both
    assert smoothness_paragraph(claims({0.1: "not measured (no runs)"})) == ""
    along = smoothness_paragraph(pd.concat([claims({0.1: "holds"}), pd.DataFrame(
        [{"id": f"ext.eos.{v}.batch_sharpness_near_edge.lr0.1", "lr": 0.1, "verdict": verdict, "mean_a": mean}
         for v, verdict, mean in (("vgg", "holds", 0.55), ("vgg_bn", "does not hold", 0.3))])]))
    assert ("BN's curvature along the gradient is more than a factor 2 from 2/lr in every seed at lr 0.1 (0.3 x "
            "2/lr). The standard net's curvature along the gradient is within a factor 2 of 2/lr in every seed at lr "
            "0.1 (0.55 x 2/lr).") in along


def test_the_smoothness_paragraph_names_a_network_that_never_left_chance():
    from ics_study.analysis.report import smoothness_paragraph

    rows = [{"id": "ext.eos.vgg_bn.beta_near_edge.lr0.2", "lr": 0.2, "verdict": "holds", "mean_a": 0.8, "n_a": 3,
             "a_at_chance": 0},
            {"id": "ext.eos.vgg.beta_near_edge.lr0.2", "lr": 0.2, "verdict": "does not hold", "mean_a": 0.056, "n_a": 3,
             "a_at_chance": 3},
            {"id": "ext.eos.vgg.beta_near_edge.lr0.1", "lr": 0.1, "verdict": "holds", "mean_a": 1.4, "n_a": 3,
             "a_at_chance": 1},
            {"id": "ext.eos.std_top_above_edge.lr0.2", "lr": 0.2, "verdict": "does not hold", "mean_a": 0.025, "n_a": 3,
             "a_at_chance": 3}]
    rows += [{"id": f"ext.eos.bn_top_lower.lr{lr:g}", "lr": lr, "verdict": v, "mean_a": 16.0, "n_a": 3, "n_b": 3,
              "a_at_chance": 0, "b_at_chance": k} for lr, v, k in ((0.1, "does not hold", 0), (0.2, "does not hold", 2),
                                                                    (0.05, "inconclusive", 0))]
    text = smoothness_paragraph(pd.DataFrame(rows))
    assert "BN's effective beta-smoothness (after the first 10% of steps) is within a factor 2 of 2/lr in every seed at lr 0.2 (0.8 x 2/lr)." in text
    assert ("The standard net's is within a factor 2 of 2/lr in every seed at lr 0.1 (1.4 x 2/lr, 1 of 3 runs at "
            "chance); more than a factor 2 from 2/lr in every seed at lr 0.2 (0.056 x 2/lr, every run at chance).") in text
    assert "The standard net's top Hessian eigenvalue stays below it at lr 0.2 (every run at chance). " in text
    assert text.endswith("At equal lr BN's top Hessian eigenvalue is higher than the standard net's in every seed at "
                         "lr 0.1, 0.2 (the standard net: 2 of 3 runs at chance); overlaps the standard net's at lr 0.05.")
