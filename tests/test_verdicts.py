"""Every rule of the claims, on hand-made per-run tables (fixed before any data was looked at):
separation beyond the seed spread, the opposite, overlap, ties, single seeds, diverged runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ics_study.analysis.claims import CLAIMS, Claim
from ics_study.analysis.verdicts import judge, judge_all


def table(values: dict[str, list[float]], stat="s", lr=0.1, diverged: dict[str, int] | None = None) -> pd.DataFrame:
    rows = []
    for variant, vals in values.items():
        for seed, v in enumerate(vals):
            bad = seed < (diverged or {}).get(variant, 0)
            rows.append({"variant": variant, "lr": lr, "seed": seed, "status": "diverged" if bad else "completed",
                         stat: np.nan if bad else v})
    return pd.DataFrame(rows)


HIGHER = Claim("t", "fig1", "a higher", "-", "s", "higher", "a", "b")


@pytest.mark.parametrize("a, b, verdict", [
    ([0.7, 0.8, 0.9], [0.4, 0.5, 0.6], "reproduced"),  # every a above every b
    ([0.4, 0.5, 0.6], [0.7, 0.8, 0.9], "not reproduced"),  # the opposite beyond the spread
    ([0.5, 0.8, 0.9], [0.4, 0.6, 0.7], "inconclusive"),  # overlap, although the mean is higher
    ([0.6, 0.6, 0.6], [0.6, 0.6, 0.6], "inconclusive"),  # a tie is no direction
    ([0.6, 0.7, 0.8], [0.5, 0.55, 0.6], "inconclusive"),  # touching (0.6 = 0.6) is not beyond
    ([0.9], [0.1], "consistent (1 seed)"),  # one run gives at most "consistent"
    ([0.1], [0.9], "inconsistent (1 seed)"),
    ([0.5], [0.5], "inconclusive (1 seed)"),
    ([0.8, 0.9], [0.1, 0.2, 0.3], "consistent (2 seeds)"),
])
def test_higher(a, b, verdict):
    assert judge(HIGHER, table({"a": a, "b": b}))["verdict"] == verdict


def test_lower_mirrors_higher():
    c = Claim("t", "fig4", "a lower", "-", "s", "lower", "a", "b")
    assert judge(c, table({"a": [1, 2, 3], "b": [4, 5, 6]}))["verdict"] == "reproduced"
    assert judge(c, table({"a": [4, 5, 6], "b": [1, 2, 3]}))["verdict"] == "not reproduced"


def test_about_equal_uses_half_the_gap_to_the_reference():
    c = Claim("t", "fig2", "a about b", "-", "s", "about_equal", "a", "b", ref="r")
    gap = {"b": [0.80, 0.81, 0.79], "r": [0.40, 0.41, 0.39]}  # tolerance 0.5 x 0.4 = 0.2
    assert judge(c, table({"a": [0.75, 0.76, 0.74], **gap}))["verdict"] == "reproduced"  # 0.05 + 0.02 <= 0.2
    assert judge(c, table({"a": [0.45, 0.46, 0.44], **gap}))["verdict"] == "not reproduced"  # 0.35 - 0.02 > 0.2
    assert judge(c, table({"a": [0.52, 0.70, 0.61], **gap}))["verdict"] == "inconclusive"  # 0.19 + 0.1 > 0.2 > 0.09
    row = judge(c, table({"a": [0.75], "b": [0.8], "r": [0.4]}))
    assert row["verdict"] == "consistent (1 seed)" and "tolerance 0.2" in row["evidence"]
    assert judge(c, table({"a": [0.75, 0.76, 0.74], "b": [0.8] * 3}))["verdict"].startswith("not measured (no r runs")


def test_not_lower_and_not_higher_by():
    c = Claim("t", "fig3", "a not lower", "-", "s", "not_lower", "a", "b", tolerance=0.2)
    assert judge(c, table({"a": [0.9, 1.0, 1.1], "b": [1.0, 1.05, 1.1]}))["verdict"] == "reproduced"  # 0.9 >= 0.88
    assert judge(c, table({"a": [0.3, 0.4, 0.5], "b": [1.0, 1.05, 1.1]}))["verdict"] == "not reproduced"  # 0.5 < 0.8
    assert judge(c, table({"a": [0.7, 0.9, 1.2], "b": [1.0, 1.05, 1.1]}))["verdict"] == "inconclusive"
    cos = Claim("t", "fig3", "cos not higher", "-", "s", "not_higher_by", "a", "b", tolerance=0.05)
    assert judge(cos, table({"a": [0.50, 0.52, 0.54], "b": [0.50, 0.51, 0.52]}))["verdict"] == "reproduced"
    assert judge(cos, table({"a": [0.80, 0.82, 0.84], "b": [0.50, 0.51, 0.52]}))["verdict"] == "not reproduced"


def test_fails_trains_counts_divergence_as_failing():
    c = Claim("t", "fig1", "a fails, b trains", "-", "s", "fails_trains", "a", "b", lr=0.5)
    t = table({"a": [0.0, 0.0, 0.1], "b": [0.7, 0.72, 0.69]}, lr=0.5, diverged={"a": 2})
    row = judge(c, t)
    assert row["verdict"] == "reproduced" and "2 diverged" in row["evidence"]
    assert judge(c, table({"a": [0.5, 0.6, 0.55], "b": [0.7, 0.72, 0.69]}, lr=0.5))["verdict"] == "not reproduced"
    assert judge(c, table({"a": [0.1, 0.6, 0.1], "b": [0.7, 0.72, 0.69]}, lr=0.5))["verdict"] == "inconclusive"


def test_diverged_runs_are_left_out_elsewhere_and_said():
    row = judge(HIGHER, table({"a": [0.0, 0.7, 0.8, 0.9], "b": [0.4, 0.5, 0.6]}, diverged={"a": 1}))
    assert row["verdict"] == "reproduced" and row["n_a"] == 3 and "1 diverged" in row["evidence"]


def test_other_learning_rates_never_enter():
    t = pd.concat([table({"a": [0.7, 0.8, 0.9], "b": [0.4, 0.5, 0.6]}), table({"a": [0.0] * 3, "b": [1.0] * 3}, lr=0.5)])
    assert judge(HIGHER, t)["verdict"] == "reproduced"


def test_the_registry_covers_every_figure_and_each_entry_is_judged():
    figures = {c.figure for c in CLAIMS}
    assert figures == {"fig1", "fig2", "fig3", "fig4", "fig8", "fig_lp", "fig_dln"}
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    ics = [c for c in CLAIMS if c.figure == "fig3"]
    assert {c.lr for c in ics} == {0.1, 0.01} and {c.statistic.split("/")[-1] for c in ics} == {"l2_diff", "cosine"}
    out = judge_all(table({"vgg": [0.1]}))
    assert len(out) == len(CLAIMS) and out.verdict.str.startswith("not measured").all()
