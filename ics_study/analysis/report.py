"""``ics-study report PATH... [--out DIR]``: the paper's claims judged, results per variant and lr.

Gathers the data here (``ReportData``) and writes it through two renderers that import nothing
from this module: ``report.md`` (``report_md.py``: figures inline, relative links) and
``report.html`` (``report_html.py``: self-contained), ``results.csv`` (one row per variant and lr) and ``claims.csv`` (one row per
claim of ``claims.py``, judged by ``verdicts.py``) from the aggregate table of the finished runs
under PATH (``aggregate.py``: the sweep's ``aggregate.parquet`` where it is current, built in memory
otherwise). Every per-run number comes from that table; this module only groups and writes.
Definitions (per run, then mean ± sample std over seeds):

- final train acc: the mean batch accuracy over the last 5% of steps (the last batch alone is too
  noisy); test acc (last 3): the test accuracy averaged over the last 3 evaluations;
- train-curve area: the mean batch training accuracy over all steps (speed; never at a ceiling);
- steps to X%: the first step at which the 100-step rolling mean of the batch accuracy reaches X;
  the mean over seeds, or "not reached (k/n)" if some seed never got there;
- noisy nets' test accuracy three ways (docs/measurements.md): as trained, recalibrated, noise on;
- wall time per preset: per sweep (the runs' parent folder) and variant, the median and the fastest
  run's ``wall_time_s`` (a resumed run's counts every attempt) and their sum.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from . import report_html, report_md
from .aggregate import THRESHOLDS, load, one_per_seed, per_run
from .claims import EOS_FACTOR
from .figures import FIGURES, make_figures
from .figures.style import label
from .runs import ENDED
from .scaling import BETA, EOS_NETWORKS, GRADIENT, TOP, eos_runs, exponent
from .verdicts import judge_all

PER_VARIANT = {"train_acc": "final_train_acc", "auc": "auc_train_acc", "test_acc": "final_test_acc",
               "test_acc_last3": "final_test_acc_last3", "test_acc_recalibrated": "final_test_acc_recalibrated",
               "test_acc_noise_on": "final_test_acc_noise_on"}  # results.csv column -> per-run column


# the report's tables of claims, in order: (kind, anchor, title, introduction)
CLAIM_SECTIONS = (("paper", "claims", "The paper's claims", ""),
                  ("check", "checks", "Checks of our implementation",
                   "These hold by how a network or probe is built: they test our code, not the paper, and are "
                   "never counted as reproduced: each holds or does not."),
                  ("extension", "beyond", "Beyond the paper",
                   "Questions the paper does not ask: how strong, how widely shared and how persistent the injected "
                   "shift must be before BN's advantage is gone, which part of BN does the work, whether normalisers "
                   "without batch statistics behave alike, and whether 'BN is smoother' is a property of BN or of the "
                   "learning rate (the edge of stability). Our own statements, judged by the same rules against the "
                   "same seed spread (each holds, does not hold, or is inconclusive), beside the paper preset's BN and standard runs; the 'paper' column names what "
                   "prompted each. Never counted with the paper's claims."))


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Per variant and learning rate, over its seeds, each training once (``one_per_seed``)."""
    out = []
    for (variant, lr), g in one_per_seed(runs_df).groupby(["variant", "lr"], sort=True):
        row = {"variant": variant, "lr": lr, "seeds": len(g), "diverged": int((g.status == "diverged").sum())}
        for name, col in PER_VARIANT.items():
            vals = g[col].astype(float) if col in g else pd.Series(dtype=float)
            row[f"{name}_mean"], row[f"{name}_std"] = vals.mean(), vals.std(ddof=0)
        for th in THRESHOLDS:
            col = f"steps_to_{round(th * 100)}"
            vals = g[col] if col in g else pd.Series(dtype=float)
            row[col] = vals.mean() if len(vals) and vals.notna().all() else np.nan
            row[f"{col}_reached"] = f"{int(vals.notna().sum())}/{len(g)}"
        out.append(row)
    return pd.DataFrame(out)


def wall_time_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Minutes per run for each sweep, variant and machine (``hardware``: the CPU's or GPU's name, else
    the device of runs that predate it): what a preset costs on the hardware that ran it, never a
    median over two machines."""
    wall = runs_df["summary/wall_time_s"] if "summary/wall_time_s" in runs_df else pd.Series(np.nan, runs_df.index)
    fallback = runs_df.get("device", pd.Series("-", runs_df.index)).fillna("-")
    df = pd.DataFrame({"sweep": runs_df.path.map(lambda p: Path(p).parent.name), "variant": runs_df.variant,
                       "device": runs_df.get("hardware", pd.Series(None, runs_df.index, dtype=object)).fillna(fallback),
                       "minutes": wall.astype(float) / 60})
    out = [{"sweep": sweep, "variant": variant, "device": device, "runs": len(g), "median_min": g.minutes.median(),
            "fastest_min": g.minutes.min(), "total_min": g.minutes.sum(min_count=1)}
           for (sweep, variant, device), g in df.groupby(["sweep", "variant", "device"], sort=True)]
    return pd.DataFrame(out, columns=["sweep", "variant", "device", "runs", "median_min", "fastest_min", "total_min"])


def _chance(claim, side: str = "a") -> str:
    """"every run at chance" (or "k of n runs at chance") where runs of the claim's network (``side``
    a or b) ended at chance: the curvature of a network that never trained, not of one at the edge of
    stability."""
    n, stuck = getattr(claim, f"n_{side}", 0), getattr(claim, f"{side}_at_chance", 0)
    if not n or pd.isna(stuck) or not stuck:
        return ""
    return "every run at chance" if stuck == n else f"{int(stuck)} of {int(n)} runs at chance"


def smoothness_paragraph(claims: pd.DataFrame, runs: pd.DataFrame | None = None) -> str:
    """What the edge-of-stability claims (issue 30) say about the paper's smoothness claim, worded from
    their verdicts, then the exponents of ``scaling.py`` fitted on ``runs``; empty where no claim was
    measured. "Tracks 2/lr" needs two learning rates or more: one lr cannot tell a level set by the lr
    from one that happens to sit near it."""
    def verdicts(pattern: str) -> pd.DataFrame:
        rows = claims[claims.id.str.match(pattern)]
        return rows[~rows.verdict.str.startswith(("not measured", "not testable"))]

    def clauses(rows: pd.DataFrame, words: dict[str, str], ratio: bool = False, other: str = "") -> str:
        """Each verdict's words and its learning rates, with the seeds' mean ratio to 2/lr if ``ratio``
        and, named ``other``, the runs at chance of the network compared with."""
        out = []
        for verdict, text in words.items():
            hits = rows[rows.verdict == verdict]
            lrs = []
            for r in hits.itertuples():
                notes = [f"{r.mean_a:.2g} x 2/lr"] if ratio and pd.notna(getattr(r, "mean_a", None)) else []
                notes += [_chance(r)] if _chance(r) else []
                notes += [f"{other}: {_chance(r, 'b')}"] if other and _chance(r, "b") else []
                lrs.append(f"{r.lr:g}" + (f" ({', '.join(notes)})" if notes else ""))
            if lrs:
                out.append(f"{text} at lr {', '.join(lrs)}")
        return "; ".join(out)

    near = {"holds": f"within a factor {EOS_FACTOR:g} of 2/lr in every seed",
            "does not hold": f"more than a factor {EOS_FACTOR:g} from 2/lr in every seed",
            "inconclusive": f"undecided against a factor {EOS_FACTOR:g} of 2/lr"}
    bn, std = verdicts(r"ext\.eos\.vgg_bn\.beta_near_edge"), verdicts(r"ext\.eos\.vgg\.beta_near_edge")
    above, lower = verdicts(r"ext\.eos\.std_top_above_edge"), verdicts(r"ext\.eos\.bn_top_lower")
    along = {name: verdicts(rf"ext\.eos\.{v}\.batch_sharpness_near_edge") for v, name in (("vgg_bn", "BN"),
                                                                                          ("vgg", "The standard net"))}
    if not len(bn):
        return ""
    text = (f"**What this means for the paper's smoothness claim.** Gradient descent's sharpness settles near "
            f"2/lr (Cohen et al. 2021). BN's effective beta-smoothness (after the first 10% of steps) is "
            f"{clauses(bn, near, ratio=True)}. ")
    if len(std):
        text += f"The standard net's is {clauses(std, near, ratio=True)}. "
    if (bn.verdict == "holds").all() and len(bn) >= 2:
        text += (f"At every learning rate tested ({len(bn)}) BN's smoothness tracks 2/lr, so the paper's BN value at lr "
                 "0.1 (~20 = 2/0.1) reads the learning rate as much as the network. ")
    elif (bn.verdict == "holds").all():
        text += ("One learning rate cannot show whether BN's smoothness tracks 2/lr or only sits near it there: "
                 "that needs the edge_of_stability sweep's learning rates. ")
    else:
        text += "BN's smoothness does not follow 2/lr at every learning rate tested: it is not set by the learning rate alone. "
    if len(above):
        text += "The standard net's top Hessian eigenvalue " + clauses(
            above, {"holds": "exceeds 2/lr beyond the seed spread", "does not hold": "stays below it",
                    "inconclusive": "is undecided against it"}) + ". "
    if len(lower):  # Ghorbani et al. 2019: no large outlier eigenvalues with BN
        text += "At equal lr BN's top Hessian eigenvalue " + clauses(
            lower, {"holds": "is lower than the standard net's in every seed", "does not hold": "is higher than the "
                    "standard net's in every seed", "inconclusive": "overlaps the standard net's"},
            other="the standard net") + ". "
    for name, rows in along.items():  # SGD's edge (arXiv 2412.20553): the curvature along the step
        if len(rows):
            text += f"{name}'s curvature along the gradient is {clauses(rows, near, ratio=True)}. "
    return (text + (_exponents(runs) if runs is not None else "")).rstrip()


def _exponents(runs: pd.DataFrame) -> str:
    """The exponents s of settled curvature ~ (2/lr)^s per network (a statistic, judged by nothing)."""
    eos = eos_runs(runs)
    parts = []
    for column, name in ((BETA, "effective beta-smoothness"), (TOP, "top Hessian eigenvalue"),
                         (GRADIENT, "curvature along the gradient")):
        fits = [f"{label(v)} {e.describe()}" for v in EOS_NETWORKS if (e := exponent(eos, v, column)) is not None]
        if fits:
            parts.append(f"{name}: {'; '.join(fits)}")
    if not parts:
        return ""
    return ("Fitted per seed on log-log axes, the settled curvature scales as (2/lr)^s (1: set by the learning rate; "
            "0: not by it at all; a statistic, not a verdict): " + ". ".join(parts) + ".")


def run_folders(table: pd.DataFrame) -> list[str]:
    """The folders holding the runs, relative to the working directory where they lie below it (a
    committed report should not name the machine's absolute paths)."""
    here = Path.cwd().resolve()
    folders = {Path(p).resolve().parent for p in table.path}
    return sorted(str(f.relative_to(here)) if f.is_relative_to(here) else str(f) for f in folders)


@dataclass
class ReportData:
    """Everything the renderers (report_md.py, report_html.py) show; they import nothing from here."""

    results: pd.DataFrame  # results_table: one row per variant and lr
    claims: pd.DataFrame  # verdicts.judge_all: one row per claim
    runs: pd.DataFrame  # the finished runs, one row each
    figures: list[str]  # the figures drawn beside the report, in FIGURES' order
    notes: str = ""  # markdown appended to the report (provenance, caveats)
    sections: tuple = CLAIM_SECTIONS
    folders: list[str] = field(init=False)
    beyond: str = field(init=False)  # the paragraph under "Beyond the paper" (smoothness_paragraph)
    settings: list[str] = field(init=False)
    wall: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.folders = run_folders(self.runs)
        self.beyond = smoothness_paragraph(self.claims, self.runs) if "id" in self.claims else ""
        self.settings = sorted({f"{d} data, width {w:g}, {s} steps, {p}" for d, w, s, p in
                                zip(self.runs.data, self.runs.width, self.runs.max_steps, self.runs.precision)})
        self.wall = wall_time_table(self.runs)

    @property
    def runs_count(self) -> int:
        return len(self.runs)


def gather(paths, out: Path, notes: Path | None = None) -> ReportData:
    """The finished runs under ``paths`` judged, with the figures in ``out`` (drawn where missing)."""
    table = per_run(load(paths))
    table = table[table.status.isin(ENDED)].reset_index(drop=True)  # interrupted runs wait for their resume
    out.mkdir(parents=True, exist_ok=True)
    missing = [f for f in FIGURES if not (out / f"{f}.png").exists()]
    if missing and all((Path(p) / "metrics").exists() for p in table.path):
        # a report carries its figures: it draws those its folder lacks (PNG, as the page embeds them)
        make_figures(paths, out, ("png",), missing, log=lambda m: print(m, file=sys.stderr), strict=False)
    elif missing:
        print("figures not drawn: some runs have only their aggregate rows (curves need the run's own tables); "
              "draw them where the runs are with: ics-study figures PATH --out " + str(out), file=sys.stderr)
    return ReportData(results_table(table), judge_all(table), table, [f for f in FIGURES if (out / f"{f}.png").exists()],
                      Path(notes).read_text() if notes is not None else "")


def make_report(paths, out: Path, notes: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write report.md, report.html, results.csv and claims.csv into ``out``; return (results, claims)."""
    data = gather(paths, out, notes)
    data.results.to_csv(out / "results.csv", index=False)
    data.claims.to_csv(out / "claims.csv", index=False)
    (out / "report.md").write_text(report_md.render(data) + ("\n" + data.notes if data.notes else ""))
    report_html.write_html(out / "report.html", data)
    return data.results, data.claims


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study report", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="run dirs and/or sweep dirs")
    ap.add_argument("--out", default="results/report", help="output folder (default results/report)")
    ap.add_argument("--notes", default=None, help="a markdown file appended to the report (context, caveats)")
    args = ap.parse_args(argv)
    if args.notes and not Path(args.notes).is_file():
        raise UserError(f"--notes {args.notes}: no such file")
    try:
        make_report(args.paths, Path(args.out), Path(args.notes) if args.notes else None)
    except OSError as e:
        raise UserError(f"cannot write the report to {args.out}: {e.strerror}") from None
    print(f"wrote {Path(args.out) / 'report.html'} (open it in a browser), report.md, results.csv, claims.csv",
          file=sys.stderr)
    return 0
