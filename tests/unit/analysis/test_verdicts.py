"""Every rule of the claims, on hand-made per-run tables (fixed before any data was looked at):
separation beyond the seed spread, the opposite, overlap, ties, single seeds, diverged runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ics_study.analysis.claims import CLAIMS, SPEED, Claim
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
RULES_ABOUT_EQUAL = "|mean a - mean b| plus both half-ranges within 0.5 x |mean b - mean ref|"


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


def test_the_rule_states_the_p_of_the_runs_it_judged():
    """3 vs 3: 1/C(6,3) = 0.05; 6 vs 6: 1/C(12,6) = 1/924; 6 vs 3: 1/C(9,3) = 1/84."""
    for a, b, p in (([0.7, 0.8, 0.9], [0.1, 0.2, 0.3], "3 vs 3: exact one-sided p = 0.05"),
                    ([0.7, 0.8, 0.9] * 2, [0.1, 0.2, 0.3] * 2, "6 vs 6: exact one-sided p = 0.0011"),
                    ([0.7, 0.8, 0.9] * 2, [0.1, 0.2, 0.3], "6 vs 3: exact one-sided p = 0.012")):
        row = judge(HIGHER, table({"a": a, "b": b}))
        assert row["verdict"] == "reproduced" and row["rule"].endswith(f"({p})")


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


def test_a_diverged_run_stays_in_a_speed_verdict_and_elsewhere_is_named():
    """The train-curve area counts a diverged run's unrun steps, so a variant whose runs all diverge
    is judged slower, not "not measured"; on any other statistic its verdict names the divergence."""
    rows = [{"variant": "a", "lr": 0.1, "seed": s, "status": "diverged", SPEED: 0.08, "x": np.nan} for s in range(3)]
    rows += [{"variant": "b", "lr": 0.1, "seed": s, "status": "completed", SPEED: 0.3 + s / 100, "x": 1.0}
             for s in range(3)]
    t = pd.DataFrame(rows)
    row = judge(Claim("t", "fig1", "a faster", "-", SPEED, "higher", "a", "b"), t)
    assert row["verdict"] == "not reproduced" and row["n_a"] == 3 and "3 diverged" in row["evidence"]
    # one diverged seed of three is not dropped from a speed verdict (the survivors alone are above b)
    mixed = t.assign(**{SPEED: [0.08, 0.5, 0.6, 0.3, 0.31, 0.32]})
    assert judge(Claim("t", "fig1", "a faster", "-", SPEED, "higher", "a", "b"), mixed)["verdict"] == "inconclusive"
    row = judge(Claim("t", "fig1", "a lower x", "-", "x", "lower", "a", "b"), t)
    assert row["verdict"] == "not measured (every a run diverged at lr 0.1 with x)"
    assert "a: 3 runs, every one diverged" in row["evidence"]


def test_other_learning_rates_never_enter():
    t = pd.concat([table({"a": [0.7, 0.8, 0.9], "b": [0.4, 0.5, 0.6]}), table({"a": [0.0] * 3, "b": [1.0] * 3}, lr=0.5)])
    assert judge(HIGHER, t)["verdict"] == "reproduced"


def test_the_registry_covers_every_figure_and_each_entry_is_judged():
    from ics_study.analysis.figures import FIGURES

    assert {c.figure for c in CLAIMS} == set(FIGURES)  # every figure judged, every claim drawn
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    ics = [c for c in CLAIMS if c.figure == "fig3"]
    assert {c.lr for c in ics} == {0.1, 0.01} and {c.statistic.split("/")[-1] for c in ics} == {"l2_diff", "cosine"}
    out = judge_all(table({"vgg": [0.1]}))
    assert len(out) == len(CLAIMS) and out.verdict.str.startswith("not measured").all()


def row_reason(row: dict) -> str:
    """The part of a "not testable" verdict after the precondition's words."""
    verdict = row["verdict"]
    assert verdict.startswith("not testable at this scale (") and verdict.endswith(")")
    return verdict[:-1].split("; ", 1)[1]


def test_a_failed_precondition_reads_not_testable_with_the_reason():
    """An endpoint claim needs both networks converged; one run short of it makes the claim untestable,
    whatever the statistic says, and the verdict names the runs and the threshold."""
    from ics_study.analysis.claims import CONVERGED

    c = Claim("t", "fig1", "a higher at the end", "-", "s", "higher", "a", "b", requires=(CONVERGED,))
    t = table({"a": [0.7, 0.8, 0.9], "b": [0.4, 0.5, 0.6]})
    t["final_train_acc"] = [0.999, 0.995, 0.992, 0.999, 0.97, 0.999]  # one b run at 97%
    row = judge(c, t)
    assert row["verdict"].startswith("not testable at this scale (needs both networks to reach 99% training accuracy")
    assert "1 of 3 b runs below 0.99 (lowest 0.97)" in row["verdict"] and " a runs" not in row["verdict"]
    t["final_train_acc"] = [0.98, 0.995, 0.992, 0.999, 0.97, 0.999]  # both sides short: both named
    assert row_reason(judge(c, t)) == ("in final_train_acc: 1 of 3 a runs below 0.99 (lowest 0.98); "
                                       "1 of 3 b runs below 0.99 (lowest 0.97)")
    t["final_train_acc"] = 0.995
    assert judge(c, t)["verdict"] == "reproduced"
    t.loc[0, "final_train_acc"] = np.nan  # a run without the statistic cannot show the precondition
    assert judge(c, t)["verdict"].startswith("not testable")


@pytest.mark.parametrize("a, ordering", [
    ([0.70, 0.71, 0.72], "every a run below every b run; nearer b than r"),  # about equal, yet always slower
    ([0.80, 0.83, 0.79], "a and b overlap; nearer b than r"),
    ([0.86, 0.87, 0.88], "every a run above every b run; nearer b than r"),
    ([0.45, 0.46, 0.44], "every a run below every b run; nearer r than b"),
])
def test_about_equal_states_the_ordering_beyond_the_spread(a, ordering):
    c = Claim("t", "fig2", "a about b", "-", "s", "about_equal", "a", "b", ref="r")
    row = judge(c, table({"a": a, "b": [0.80, 0.81, 0.82], "r": [0.40, 0.41, 0.39]}))
    assert row["ordering"] == ordering
    assert judge(c, table({"a": [0.7], "b": [0.8], "r": [0.4]}))["ordering"].startswith("a below b on the means")
    assert judge(HIGHER, table({"a": a, "b": [0.80, 0.81, 0.82]}))["ordering"] == ""  # other rules: none


def test_checks_are_apart_from_the_paper_s_claims_and_never_counted(tmp_path):
    """The construction checks (the pinned BN output, the noise's own instability) are kind "check";
    the report lists them in their own table and leaves them out of the headline counts."""
    from ics_study.analysis.report import ReportData
    from ics_study.analysis.report_md import render

    kinds = {c.id: c.kind for c in CLAIMS}
    assert kinds["fig8.noisy_less_stable_than_bn"] == kinds["fig8.noisy_less_stable_than_std"] == "check"
    assert kinds["check.bn_output_pinned"] == "check" and kinds["fig1.bn_not_more_stable"] == "paper"
    stability = {c.statistic for c in CLAIMS if c.id == "fig1.bn_not_more_stable" or c.id.endswith("not_stabilised")}
    assert stability == {"shift/pre_norm/w1_lag"}  # judged where BN does not fix the answer
    cl = pd.DataFrame([{"id": "p", "kind": "paper", "figure": "fig1", "claim": "P", "paper": "-", "statistic": "s",
                        "lr": 0.1, "rule": "r", "evidence": "e", "verdict": "inconclusive", "ordering": "", "note": ""},
                       {"id": "c", "kind": "check", "figure": "fig8", "claim": "C", "paper": "-", "statistic": "s",
                        "lr": 0.1, "rule": "r", "evidence": "e", "verdict": "reproduced", "ordering": "", "note": ""}])
    runs = pd.DataFrame({"data": ["synthetic"], "width": [0.25], "max_steps": [10], "precision": ["fp32"],
                         "path": [str(tmp_path / "run")], "variant": ["vgg"], "status": ["completed"]})
    text = render(ReportData(pd.DataFrame(columns=["variant", "lr", "seeds", "diverged", "test_acc_recalibrated_mean"]),
                             cl, runs, []))
    assert ("Verdicts on the paper's claims: 1 inconclusive (and 1 checks of our implementation and 0 questions "
            "beyond the paper, not counted)") in text
    paper_part, check_part = text.split("## Checks of our implementation")
    assert "| P (lr 0.1)" in paper_part and "| C (lr 0.1)" in check_part and "| C (lr 0.1)" not in paper_part


def test_a_rule_with_bars_stays_in_its_markdown_cell(tmp_path):
    """"|mean a - mean b| ..." and "||G - G'||" in a claims-table cell would split the row into more
    cells than the header has; every row keeps the header's six cells, the bars escaped."""
    import re

    from ics_study.analysis.report import ReportData
    from ics_study.analysis.report_md import render

    cl = pd.DataFrame([{"id": "p", "kind": "paper", "figure": "fig_lp", "claim": "ICS ||G - G'||", "paper": "-",
                        "statistic": "s", "lr": 0.1, "rule": RULES_ABOUT_EQUAL, "evidence": "e",
                        "verdict": "reproduced", "ordering": "", "note": ""}])
    runs = pd.DataFrame({"data": ["synthetic"], "width": [0.25], "max_steps": [10], "precision": ["fp32"],
                         "path": [str(tmp_path / "run")], "variant": ["vgg"], "status": ["completed"]})
    text = render(ReportData(pd.DataFrame(columns=["variant", "lr", "seeds", "diverged", "test_acc_recalibrated_mean"]),
                             cl, runs, []))
    header, _, row = text.split("| figure | claim |")[1].splitlines()[:3]
    cells = lambda line: re.split(r"(?<!\\)\|", line.strip().strip("|"))  # noqa: E731
    assert len(cells(row)) == len(cells("| figure | claim |" + header)) == 6
    assert "\\|mean a - mean b\\|" in row


def test_derived_means_leave_out_step_1_and_figure_4_is_judged_after_the_transient(tmp_path):
    """A hand-made metrics table of a 1,000-step run: the ICS and landscape means skip step 1 (the
    initialisation); the settled Figure 4 statistics start after the first 10% of steps, the loss
    range there is log10(max/min), and gradient predictiveness also comes over ||grad L(w)||."""
    from ics_study.analysis.aggregate import TRANSIENT, derived

    rows = [("train/acc", s, 0.5) for s in range(1, 1001)]
    rows += [("ics/layer05/cosine", 1, 0.0), ("ics/layer05/cosine", 100, 0.8), ("ics/layer05/cosine", 200, 0.6)]
    for step, lo, hi, gp, gn in ((1, 1.0, 1000.0, 1e-6, 1e-5), (50, 1.0, 100.0, 1e-4, 1e-2), (200, 2.0, 20.0, 0.5, 5.0),
                                 (400, 1.0, 1000.0, 1.0, 4.0)):
        rows += [("landscape/loss_min", step, lo), ("landscape/loss_max", step, hi), ("landscape/gradpred_max", step, gp),
                 ("landscape/grad_norm", step, gn), ("landscape/beta_smoothness", step, step / 10)]
    metrics = pd.DataFrame(rows, columns=["metric", "step", "value"])
    out = {k: v for k, (_, v) in derived(tmp_path, metrics).items()}
    assert TRANSIENT == 0.1
    assert out["mean/ics/layer05/cosine"] == pytest.approx(0.7)  # step 1's 0.0 left out
    assert out["mean/landscape/beta_smoothness"] == pytest.approx((5 + 20 + 40) / 3)
    assert out["mean/landscape/loss_range"] == pytest.approx((99 + 18 + 999) / 3)
    # settled: steps after 100 only (200 and 400)
    assert out["settled/landscape/log_loss_range"] == pytest.approx((1 + 3) / 2)
    assert out["settled/landscape/gradpred_max"] == pytest.approx(0.75)
    assert out["settled/landscape/gradpred_relative"] == pytest.approx((0.1 + 0.25) / 2)
    assert out["settled/landscape/beta_smoothness"] == pytest.approx(30)


def test_a_diverged_run_s_area_counts_its_unrun_steps_at_its_diverged_accuracy(tmp_path):
    """100 planned steps; 0.5 until step 20, the loss non-finite from step 21 and 0.1 accuracy from
    there until the run stopped at step 50: (20 x 0.5 + 30 x 0.1 + 50 x 0.1) / 100 = 0.18. The same
    curve in a run that completed its 50 planned steps is its plain mean, 0.26."""
    import json

    from ics_study.analysis.aggregate import derived

    acc = pd.DataFrame([("train/acc", s, 0.5 if s <= 20 else 0.1) for s in range(1, 51)],
                       columns=["metric", "step", "value"])
    (tmp_path / "summary.json").write_text(json.dumps({"status": "diverged", "steps": 50, "final": {}, "diverged_at": 21, "max_steps": 100}))
    assert derived(tmp_path, acc)["auc/train_acc"][1] == pytest.approx(0.18)
    (tmp_path / "summary.json").write_text(json.dumps({"status": "completed", "steps": 50, "final": {}, "max_steps": 50}))
    assert derived(tmp_path, acc)["auc/train_acc"][1] == pytest.approx(0.26)


@pytest.mark.parametrize("kind, yes, no", [("paper", "reproduced", "not reproduced"),
                                            ("extension", "holds", "does not hold"), ("check", "holds", "does not hold")])
def test_only_the_paper_s_claims_are_reproduced_our_own_statements_hold(kind, yes, no):
    """"Not reproduced" for a statement the paper never made would read as a failed replication."""
    c = Claim("t", "fig1", "a not much lower", "-", "s", "not_lower", "a", "b", tolerance=0.2, kind=kind)
    assert judge(c, table({"a": [0.9, 1.0, 1.1], "b": [1.0, 1.05, 1.1]}))["verdict"] == yes
    row = judge(c, table({"a": [0.3, 0.4, 0.5], "b": [1.0, 1.05, 1.1]}))
    assert row["verdict"] == no and f"({no}: every run below" in row["rule"]
    assert judge(c, table({"a": [0.7, 0.9, 1.2], "b": [1.0, 1.05, 1.1]}))["verdict"] == "inconclusive"


def test_absolute_levels_judge_one_variant_alone():
    """"cos(G, G') near 1" and "almost uncorrelated" are levels, not comparisons: at_least / at_most
    judge every run of a against the stated threshold, and b takes no part."""
    near_one = Claim("t", "fig_dln", "cos near 1", "-", "s", "at_least", "a", "", tolerance=0.9)
    assert judge(near_one, table({"a": [0.95, 0.97, 0.99]}))["verdict"] == "reproduced"
    assert judge(near_one, table({"a": [0.2, 0.5, 0.8]}))["verdict"] == "not reproduced"
    assert judge(near_one, table({"a": [0.85, 0.95, 0.99]}))["verdict"] == "inconclusive"
    assert judge(near_one, table({"a": [0.95]}))["verdict"] == "consistent (1 seed)"
    row = judge(near_one, table({"a": [0.95, 0.97, 0.99], "b": [0.0] * 3}))
    assert row["n_b"] == 0 and "b" not in row["evidence"].split(";")[-1]
    low = Claim("t", "fig_dln", "uncorrelated", "-", "s", "at_most", "a", "", tolerance=0.3)
    assert judge(low, table({"a": [0.1, -0.2, 0.25]}))["verdict"] == "reproduced"
    assert judge(low, table({"a": [0.4, 0.6, 0.9]}))["verdict"] == "not reproduced"
    assert judge(low, table({"b": [0.1] * 3}))["verdict"].startswith("not measured (no a runs")
    kinds = {c.id: c for c in CLAIMS}
    assert kinds["dln.std_no_ics.layer17.lr1e-07"].rule == "at_least"
    assert kinds["dln.bn_uncorrelated.layer9.lr1e-06"].rule == "at_most" and kinds["dln.bn_uncorrelated.layer9.lr1e-06"].lr == 1e-6


def test_a_seed_run_in_two_sweeps_counts_once_with_its_measurement():
    """The same training in two sweeps (the paper sweep's noisy BN with ICS on, the noise_strength
    preset's k = 1 without): one run per seed, the one that measured the statistic."""
    t = table({"a": [0.7, 0.8, 0.9], "b": [0.4, 0.5, 0.6]})
    twice = pd.concat([t, t.assign(s=np.nan)], ignore_index=True)  # seeds again, without the statistic
    row = judge(HIGHER, twice)
    assert row["verdict"] == "reproduced" and "n=3" in row["evidence"] and "0.8" in row["evidence"]
    # the same training with fewer measurements on (the edge-of-stability sweep's lr 0.1) listed first:
    # the run that measured more is kept for what both measured, the other for what only it measured
    flags = {"probe": True, "ics": True, "landscape": True}
    eos = t.assign(s=t.s + 100, probe=False, ics=False, landscape=True, only=1.0)
    both = pd.concat([eos, t.assign(**flags, only=np.nan)], ignore_index=True)
    assert "n=3" in judge(HIGHER, both)["evidence"] and " 0.8 " in judge(HIGHER, both)["evidence"]
    only = Claim("t", "fig1", "a higher", "-", "only", "higher", "a", "b")
    assert judge(only, both)["n_a"] == 3  # the statistic only the edge-of-stability runs measured
    other = pd.concat([t, t[t.variant == "a"].assign(width=0.5)], ignore_index=True)  # another width: not the same run
    assert "n=6" in judge(HIGHER, other.assign(width=other.width.fillna(0.25)))["evidence"].split(";")[0]


@pytest.mark.parametrize("values, verdict", [([0.6, 1.0, 1.9], "reproduced"), ([2.5, 3.0, 0.3], "not reproduced"),
                                             ([0.4, 1.0, 1.2], "inconclusive")])
def test_within_a_factor_of_one_on_a_hand_made_table(values, verdict):
    c = Claim("t", "fig_eos", "near the edge", "-", "s", "within_factor", "a", "", tolerance=2.0)
    assert judge(c, table({"a": values}))["verdict"] == verdict


def test_runs_that_never_left_chance_are_named_in_the_evidence_and_keep_their_verdict():
    """A network at chance has a low curvature for no good reason: the evidence says so (train acc
    below FAIL_ACC, not diverged), the verdict stays the rule's."""
    c = Claim("t", "fig_eos", "a lower", "-", "s", "lower", "a", "b")
    t = table({"a": [0.02, 0.03, 0.025], "b": [1.0, 1.1, 1.2]}).assign(final_train_acc=[0.09, 0.11, 0.1, 0.5, 0.6, 0.55])
    row = judge(c, t)
    assert row["verdict"] == "reproduced" and (row["a_at_chance"], row["b_at_chance"]) == (3, 0)
    flipped = judge(Claim("t", "fig_eos", "b higher", "-", "s", "higher", "b", "a"), t)
    assert (flipped["a_at_chance"], flipped["b_at_chance"]) == (0, 3)
    assert row["evidence"].startswith("a 0.025 ± 0.005 (n=3, 0.02 to 0.03), every one ended at chance (train acc < 0.2);")
    assert "chance" not in row["evidence"].split(";")[1]
    one = judge(c, t.assign(final_train_acc=[0.09, 0.4, 0.5, 0.5, 0.6, 0.55]))
    assert one["a_at_chance"] == 1 and "), 1 ended at chance (train acc < 0.2)" in one["evidence"]
    # a diverged run is said as diverged, not at chance
    gone = judge(c, table({"a": [0.0, 0.03, 0.025], "b": [1.0, 1.1, 1.2]}, diverged={"a": 1})
                 .assign(final_train_acc=[np.nan, 0.5, 0.5, 0.5, 0.6, 0.55]))
    assert gone["a_at_chance"] == 0 and "chance" not in gone["evidence"] and "1 diverged" in gone["evidence"]
