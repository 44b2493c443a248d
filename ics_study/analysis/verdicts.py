"""Verdicts: each claim of ``claims.py`` judged against the spread between seeds, by a stated rule.

With at least ``MIN_SEEDS`` (3) runs on each side a rule asks for separation beyond the spread of
the runs: "higher" needs every run of a above every run of b. At 3 vs 3 that ordering has an exact
one-sided permutation p of 1/C(6,3) = 0.05 under "no difference". The opposite, beyond the spread,
is "not reproduced"; anything else is "inconclusive". Our own statements (``kind`` "extension") and the
checks of our implementation were never the paper's to reproduce: they "hold" or "do not hold". With fewer runs the same comparison is made
on the means and gives at most "consistent (k seeds)" (or "inconsistent (k seeds)"). Ties are never
a direction. Runs that diverged are left out of every rule but ``fails_trains`` (where diverging is
failing); the evidence says how many, and how many ended at chance without diverging. A claim whose
preconditions (``Claim.requires``) fail on some run reads "not testable at this scale", with the
reason. ``about_equal`` claims also get an ``ordering``: where a sits against b beyond the spread,
and whether it is nearer b than ``ref``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .aggregate import KEEPS_DIVERGED, at_chance, one_per_seed
from .claims import CLAIMS, FAIL_ACC, SIMILAR_OF_GAP, TRAIN_ACC, Claim

MIN_SEEDS = 3
# a verdict's words by the claim's kind: (holds beyond the spread, the opposite beyond the spread)
OUTCOMES = {"paper": ("reproduced", "not reproduced"), "check": ("holds", "does not hold"),
            "extension": ("holds", "does not hold")}

RULES = {
    "higher": "every run of {a} above every run of {b} ({p})",
    "lower": "every run of {a} below every run of {b} ({p})",
    "about_equal": "|mean {a} - mean {b}| plus both half-ranges within {f:g} x |mean {b} - mean {ref}|",
    "not_lower": "every run of {a} at least {keep:g} x every run of {b} ({no}: every run below {keep:g} x every run of {b})",
    "not_higher_by": "every run of {a} at most every run of {b} + {t:g} ({no}: every run above that)",
    "fails_trains": f"every {{a}} run diverges or ends below {FAIL_ACC:g} train accuracy; every {{b}} run ends above {TRAIN_ACC:g}",
    "at_least": "every run of {a} at least {t:g} ({no}: every run below)",
    "at_most": "every run of {a} at most {t:g} ({no}: every run above)",
    "within_factor": "every run of {a} within a factor {t:g} of 1 ({no}: every run outside)",
}
ONE_SIDED = ("at_least", "at_most", "within_factor")  # rules on a alone


def separation_p(n_a: int, n_b: int) -> float:
    """The exact one-sided permutation p of every one of n_a runs beyond every one of n_b runs, under
    "no difference": 1 / C(n_a + n_b, n_a) (3 vs 3: 0.05; 6 vs 6: 0.0011)."""
    return 1 / math.comb(n_a + n_b, n_a)


def rule_text(c: Claim, n_a: int = MIN_SEEDS, n_b: int = MIN_SEEDS) -> str:
    """The claim's rule in words, with the p of a complete separation at the runs' numbers (at
    MIN_SEEDS a side where a side has none)."""
    n_a, n_b = (n_a, n_b) if n_a and n_b else (MIN_SEEDS, MIN_SEEDS)
    p = f"{n_a} vs {n_b}: exact one-sided p = {separation_p(n_a, n_b):.2g}"
    return RULES[c.rule].format(a=c.a, b=c.b, ref=c.ref, f=SIMILAR_OF_GAP, keep=1 - c.tolerance, t=c.tolerance, p=p,
                                no=OUTCOMES[c.kind][1])


def _setting(table: pd.DataFrame, variant: str, lr: float, prefer: str | None = None) -> pd.DataFrame:
    """The variant's runs at ``lr``, each training once (``one_per_seed``)."""
    return one_per_seed(table[(table.variant == variant) & np.isclose(table.lr.astype(float), lr)], prefer)


def _runs(table: pd.DataFrame, variant: str, lr: float, statistic: str, keep_diverged: bool) -> tuple[np.ndarray, int]:
    """The variant's values of ``statistic`` at ``lr`` (NaN where a run has none) and how many of
    its runs diverged: left out unless ``keep_diverged`` (then as NaN, a failure), except in the
    train-curve area, which counts a diverged run's unrun steps (``aggregate._area``) and so keeps
    it as the slow run it is; leaving it out would judge a variant by its seeds that survived."""
    t = _setting(table, variant, lr, statistic)
    diverged = int((t.status == "diverged").sum())
    if not keep_diverged and statistic != KEEPS_DIVERGED:
        t = t[t.status != "diverged"]
    if statistic not in t:
        return np.array([]), diverged
    values = t[statistic].astype(float).to_numpy()
    if keep_diverged:  # a diverged run's value stays missing, as a failure
        return np.where(t.status.to_numpy() == "diverged", np.nan, values), diverged
    return values[~np.isnan(values)], diverged


def _at_chance(table: pd.DataFrame, variant: str, lr: float) -> int:
    """How many of the variant's runs at ``lr`` ended at chance without diverging (``at_chance``)."""
    return int(at_chance(_setting(table, variant, lr)).sum())


def _describe(name: str, v: np.ndarray, diverged: int, stuck: int = 0) -> str:
    if not len(v):
        return f"{name}: {diverged} runs, every one diverged" if diverged else f"{name}: no runs"
    finite = v[np.isfinite(v)]
    text = f"{name} {np.mean(finite):.4g} ± {np.std(finite, ddof=1) if len(finite) > 1 else 0:.2g} (n={len(v)}"
    text += f", {np.min(finite):.4g} to {np.max(finite):.4g})" if len(finite) > 1 else ")"
    if stuck:
        text += f", {'every one' if stuck == len(v) else stuck} ended at chance (train acc < {FAIL_ACC:g})"
    return text + (f", {diverged} diverged" if diverged else "")


def _decide(c: Claim, a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> tuple[bool, bool]:
    """(holds beyond the spread, opposite beyond the spread) for the runs given."""
    if c.rule == "higher":
        return a.min() > b.max(), a.max() < b.min()
    if c.rule == "lower":
        return a.max() < b.min(), a.min() > b.max()
    if c.rule == "about_equal":
        tol = SIMILAR_OF_GAP * abs(b.mean() - ref.mean())
        d, spread = abs(a.mean() - b.mean()), (np.ptp(a) + np.ptp(b)) / 2
        return d + spread <= tol, d - spread > tol
    if c.rule == "not_lower":
        keep = 1 - c.tolerance
        return a.min() >= keep * b.max(), a.max() < keep * b.min()
    if c.rule == "not_higher_by":
        return a.max() <= b.min() + c.tolerance, a.min() > b.max() + c.tolerance
    if c.rule == "at_least":
        return a.min() >= c.tolerance, a.max() < c.tolerance
    if c.rule == "at_most":
        return a.max() <= c.tolerance, a.min() > c.tolerance
    if c.rule == "within_factor":  # a ratio such as curvature x lr / 2 (1: the edge of stability)
        inside = (a >= 1 / c.tolerance) & (a <= c.tolerance)
        return bool(inside.all()), bool((~inside).all())
    if c.rule == "fails_trains":
        fails = np.isnan(a) | (a < FAIL_ACC)
        trains = ~np.isnan(b) & (b > TRAIN_ACC)
        return bool(fails.all() and trains.all()), bool((~fails).all() or (~trains).all())
    raise ValueError(f"unknown rule {c.rule!r}")


def _unmet(c: Claim, table: pd.DataFrame) -> str | None:
    """The first precondition that some run fails, as the verdict's reason, naming each side short of it."""
    for req in c.requires:
        short = []
        for variant in (v for v in (c.a, c.b) if v):
            values, _ = _runs(table, variant, c.lr, req.statistic, keep_diverged=True)
            below = int((~(values >= req.minimum)).sum())  # NaN (diverged, unmeasured) fails too
            if below:
                worst = np.nanmin(values) if np.isfinite(values).any() else np.nan
                short.append(f"{below} of {len(values)} {variant} runs below {req.minimum:g} (lowest {worst:.3g})")
        if short:
            return f"needs {req.text}; in {req.statistic}: {'; '.join(short)}"
    return None


def _ordering(c: Claim, a: np.ndarray, b: np.ndarray, ref: np.ndarray) -> str:
    """Where a sits against b beyond the spread (every run on one side), and nearer b or ref."""
    if min(len(a), len(b)) < MIN_SEEDS:
        side = "below" if a.mean() < b.mean() else "above" if a.mean() > b.mean() else "level with"
        where = f"{c.a} {side} {c.b} on the means (too few seeds for a spread)"
    elif a.max() < b.min():
        where = f"every {c.a} run below every {c.b} run"
    elif a.min() > b.max():
        where = f"every {c.a} run above every {c.b} run"
    else:
        where = f"{c.a} and {c.b} overlap"
    nearer = c.b if abs(a.mean() - b.mean()) < abs(a.mean() - ref.mean()) else c.ref
    return f"{where}; nearer {nearer} than {c.ref if nearer == c.b else c.b}"


def judge(c: Claim, table: pd.DataFrame) -> dict:
    """One claim against the per-run table: its verdict and the evidence for it."""
    keep = c.rule == "fails_trains"
    a, da = _runs(table, c.a, c.lr, c.statistic, keep)
    b, db = _runs(table, c.b, c.lr, c.statistic, keep) if c.b else (np.array([0.0]), 0)  # "": a rule on a alone
    ref, dr = _runs(table, c.ref, c.lr, c.statistic, keep) if c.ref else (np.array([0.0]), 0)
    row = {"id": c.id, "kind": c.kind, "figure": c.figure, "claim": c.statement, "paper": c.paper,
           "statistic": c.statistic, "lr": c.lr, "rule": rule_text(c, len(a), len(b)), "n_a": len(a), "n_b": len(b) if c.b else 0,
           "mean_a": np.nanmean(a) if np.isfinite(a).any() else np.nan,
           "mean_b": np.nanmean(b) if c.b and np.isfinite(b).any() else np.nan, "note": c.note, "ordering": ""}
    chance = {v: _at_chance(table, v, c.lr) for v in (c.a, c.b, c.ref) if v}
    row["a_at_chance"], row["b_at_chance"] = chance[c.a], chance[c.b] if c.b else np.nan
    parts = [_describe(c.a, a, da, chance[c.a])] + ([_describe(c.b, b, db, chance[c.b])] if c.b else []) + (
        [_describe(c.ref, ref, dr, chance[c.ref])] if c.ref else [])
    row["evidence"] = "; ".join(parts)
    if not len(a) or not len(b) or not len(ref):
        gone = [f"every {v} run diverged" if d else f"no {v} runs"
                for v, x, d in ((c.a, a, da), (c.b, b, db), (c.ref, ref, dr)) if v and not len(x)]
        return {**row, "verdict": f"not measured ({', '.join(gone)} at lr {c.lr:g} with {c.statistic})"}
    unmet = _unmet(c, table)
    if unmet:
        return {**row, "verdict": f"not testable at this scale ({unmet})"}
    if c.rule == "about_equal":
        row["evidence"] += f"; tolerance {SIMILAR_OF_GAP * abs(np.mean(b) - np.mean(ref)):.3g}"
        row["ordering"] = _ordering(c, a, b, ref)
    n = min([len(a)] + ([len(b)] if c.b else []) + ([len(ref)] if c.ref else []))
    if n >= MIN_SEEDS:
        holds, opposite = _decide(c, a, b, ref)
        yes, no = OUTCOMES[c.kind]
        verdict = yes if holds else no if opposite else "inconclusive"
    else:  # too few runs for a spread: the same comparison on the means
        mean = lambda x: np.array([np.nanmean(x)]) if c.rule != "fails_trains" else x  # noqa: E731
        holds, opposite = _decide(c, mean(a), mean(b), mean(ref))
        verdict = (f"consistent ({n} seed{'s' * (n > 1)})" if holds else
                   f"inconsistent ({n} seed{'s' * (n > 1)})" if opposite else f"inconclusive ({n} seed{'s' * (n > 1)})")
    return {**row, "verdict": verdict}


def judge_all(table: pd.DataFrame, claims: list[Claim] = CLAIMS) -> pd.DataFrame:
    return pd.DataFrame([judge(c, table) for c in claims])
