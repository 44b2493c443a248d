"""``ics-study report PATH... [--out DIR]``: the paper's claims judged, results per variant and lr.

Writes ``report.md`` (figures inline, relative links), ``report.html`` (self-contained, see
``report_html.py``), ``results.csv`` (one row per variant and lr) and ``claims.csv`` (one row per
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
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from .aggregate import THRESHOLDS, load, per_run
from .figures.paper import FIGURES
from .runs import ENDED
from .verdicts import judge_all

PER_VARIANT = {"train_acc": "final_train_acc", "auc": "auc_train_acc", "test_acc": "final_test_acc",
               "test_acc_last3": "final_test_acc_last3", "test_acc_recalibrated": "final_test_acc_recalibrated",
               "test_acc_noise_on": "final_test_acc_noise_on"}  # results.csv column -> per-run column


# the report's two tables of claims, in order: (kind, anchor, title, introduction)
CLAIM_SECTIONS = (("paper", "claims", "The paper's claims", ""),
                  ("check", "checks", "Checks of our implementation",
                   "These hold by how a network or probe is built: they test our code, not the paper, and are "
                   "never counted as reproduced."))


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (variant, lr), g in runs_df.groupby(["variant", "lr"], sort=True):
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
    """Minutes per run for each sweep and variant: what a preset costs on the hardware that ran it."""
    wall = runs_df["summary/wall_time_s"] if "summary/wall_time_s" in runs_df else pd.Series(np.nan, runs_df.index)
    df = pd.DataFrame({"sweep": runs_df.path.map(lambda p: Path(p).parent.name), "variant": runs_df.variant,
                       "device": runs_df.get("device", pd.Series("-", runs_df.index)).fillna("-"),
                       "minutes": wall.astype(float) / 60})
    out = [{"sweep": sweep, "variant": variant, "device": ", ".join(sorted(set(g.device.astype(str)))), "runs": len(g),
            "median_min": g.minutes.median(), "fastest_min": g.minutes.min(), "total_min": g.minutes.sum(min_count=1)}
           for (sweep, variant), g in df.groupby(["sweep", "variant"], sort=True)]
    return pd.DataFrame(out, columns=["sweep", "variant", "device", "runs", "median_min", "fastest_min", "total_min"])


def _fmt(mean, std) -> str:
    return "-" if pd.isna(mean) else f"{mean:.3f} ± {0 if pd.isna(std) else std:.3f}"


def run_folders(table: pd.DataFrame) -> list[str]:
    """The folders holding the runs, relative to the working directory where they lie below it (a
    committed report should not name the machine's absolute paths)."""
    here = Path.cwd().resolve()
    folders = {Path(p).resolve().parent for p in table.path}
    return sorted(str(f.relative_to(here)) if f.is_relative_to(here) else str(f) for f in folders)


def _minutes(v) -> str:
    return "-" if pd.isna(v) else f"{v:.1f} min"


def _steps(r, th: int) -> str:
    v = getattr(r, f"steps_to_{th}")
    return f"{v:.0f}" if not pd.isna(v) else f"not reached ({getattr(r, f'steps_to_{th}_reached')})"


def disagreements(cl: pd.DataFrame) -> list[str]:
    """A short paragraph per claim the runs do not reproduce, in plain words."""
    out = []
    for c in cl[cl.kind == "paper"].itertuples():
        if c.verdict == "reproduced" or c.verdict.startswith(("not measured", "not testable")):
            continue
        what = {"not reproduced": "Our runs show the opposite, beyond the spread between seeds",
                "inconclusive": "Our runs do not separate the two beyond the spread between seeds"}.get(
            c.verdict.split(" (")[0], f"Too few runs to judge against seed noise ({c.verdict})")
        out.append(f"- **{c.claim}** ({c.figure}, lr {c.lr:g}). The paper: {c.paper}. {what}: {c.evidence} "
                   f"({c.statistic}; rule: {c.rule}).{' ' + c.note[0].upper() + c.note[1:] + '.' if c.note else ''}")
    return out


def render(res: pd.DataFrame, cl: pd.DataFrame, table: pd.DataFrame, figures: list[str]) -> str:
    lines = ["# ics-study report", "", f"{len(table)} runs from: " + ", ".join(run_folders(table)), ""]
    notes = sorted({f"{d} data, width {w:g}, {s} steps, {p}" for d, w, s, p in
                    zip(table.data, table.width, table.max_steps, table.precision)})
    paper, checks = cl[cl.kind == "paper"], cl[cl.kind == "check"]
    counts = paper.verdict.str.split(" \\(").str[0].value_counts()
    lines += ["Settings: " + "; ".join(notes), "",
              "Verdicts on the paper's claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())
              + f" (and {len(checks)} checks of our implementation, not counted)", ""]
    for kind, _, title, intro in CLAIM_SECTIONS:
        rows = cl[cl.kind == kind]
        if not len(rows):
            continue
        lines += [f"## {title}", "", *([intro, ""] if intro else []),
                  "| figure | claim | paper | measured (mean ± std over seeds, n, range) | rule | verdict |",
                  "|---|---|---|---|---|---|"]
        for c in rows.itertuples():
            fig = f"[{c.figure}]({c.figure}.png)" if c.figure in figures else c.figure
            verdict = f"**{c.verdict}**" + (f"; {c.ordering}" if c.ordering else "")
            lines.append(f"| {fig} | {c.claim} (lr {c.lr:g}) | {c.paper} | {c.evidence} | {c.rule} | {verdict} |")
        lines.append("")
    paragraphs = disagreements(cl)
    if paragraphs:
        lines += ["", "## Where our runs and the paper disagree", ""] + paragraphs
    if figures:
        lines += ["", "## Figures", ""] + [f"### {f}\n\n![{f}]({f}.png)\n" for f in figures]
    lines += ["", "## Results per variant and learning rate", "",
              "| variant | lr | seeds | final train acc | train-curve area | test acc (last 3) | final test acc | "
              "steps to 50% | 80% | 90% | 99% | diverged |", "|---" * 12 + "|"]
    for r in res.itertuples():
        lines.append(f"| {r.variant} | {r.lr:g} | {r.seeds} | {_fmt(r.train_acc_mean, r.train_acc_std)} | "
                     f"{_fmt(r.auc_mean, r.auc_std)} | {_fmt(r.test_acc_last3_mean, r.test_acc_last3_std)} | "
                     f"{_fmt(r.test_acc_mean, r.test_acc_std)} | " + " | ".join(_steps(r, t) for t in (50, 80, 90, 99))
                     + f" | {r.diverged} |")
    noisy = res[res.test_acc_recalibrated_mean.notna()]
    if len(noisy):
        lines += ["", "Noisy-BN test accuracy, three readings (docs/measurements.md):", "",
                  "| variant | lr | as trained (noise off, BN statistics as trained) | BN recalibrated on clean batches | noise on |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.variant} | {r.lr:g} | {_fmt(r.test_acc_mean, r.test_acc_std)} | "
                  f"{_fmt(r.test_acc_recalibrated_mean, r.test_acc_recalibrated_std)} | "
                  f"{_fmt(r.test_acc_noise_on_mean, r.test_acc_noise_on_std)} |" for r in noisy.itertuples()]
    lines += ["", "## Wall time per preset", "",
              "| sweep | variant | device | runs | median per run | fastest run | all runs |", "|---" * 7 + "|"]
    lines += [f"| {w.sweep} | {w.variant} | {w.device} | {w.runs} | {_minutes(w.median_min)} | "
              f"{_minutes(w.fastest_min)} | {_minutes(w.total_min)} |" for w in wall_time_table(table).itertuples()]
    lines += ["", "Definitions: `ics_study/analysis/report.py`, `ics_study/analysis/claims.py` (statistics, tolerances), "
              "`ics_study/analysis/verdicts.py` (rules: with >= 3 seeds a side, \"reproduced\" needs every run of one "
              "side beyond every run of the other).", ""]
    return "\n".join(lines)


def make_report(paths, out: Path, notes: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = per_run(load(paths))
    table = table[table.status.isin(ENDED)].reset_index(drop=True)  # interrupted runs wait for their resume
    res = results_table(table)
    cl = judge_all(table)
    out.mkdir(parents=True, exist_ok=True)
    missing = [f for f in FIGURES if not (out / f"{f}.png").exists()]
    if missing and all((Path(p) / "metrics").exists() for p in table.path):
        # a report carries its figures: it draws those its folder lacks (PNG, as the page embeds them)
        from .figures import make_figures

        make_figures(paths, out, ("png",), missing, log=lambda m: print(m, file=sys.stderr), strict=False)
    elif missing:
        print("figures not drawn: some runs have only their aggregate rows (curves need the run's own tables); "
              "draw them where the runs are with: ics-study figures PATH --out " + str(out), file=sys.stderr)
    figures = [f for f in FIGURES if (out / f"{f}.png").exists()]
    res.to_csv(out / "results.csv", index=False)
    cl.to_csv(out / "claims.csv", index=False)
    text = render(res, cl, table, figures)
    notes_text = Path(notes).read_text() if notes is not None else ""
    (out / "report.md").write_text(text + ("\n" + notes_text if notes_text else ""))
    from .report_html import write_html

    write_html(out / "report.html", res, cl, table, figures, notes_text)
    return res, cl


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
