"""report.md: the report as markdown, from the data that ``report.py`` gathers (figures linked, not
embedded; the HTML renderer is ``report_html.py``)."""

from __future__ import annotations

import pandas as pd


def _cell(text: str) -> str:
    """A table cell: "|" escaped, or a rule such as "|mean a - mean b|" or "||G - G'||" splits the row."""
    return str(text).replace("|", "\\|")


def _fmt(mean, std) -> str:
    return "-" if pd.isna(mean) else f"{mean:.3f} ± {0 if pd.isna(std) else std:.3f}"


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


def render(data) -> str:
    """report.md's text from a ``report.ReportData``."""
    res, cl, figures = data.results, data.claims, data.figures
    lines = ["# ics-study report", "", f"{data.runs_count} runs from: " + ", ".join(data.folders), ""]
    paper, checks, beyond = (cl[cl.kind == k] for k in ("paper", "check", "extension"))
    counts = paper.verdict.str.split(" \\(").str[0].value_counts()
    lines += ["Settings: " + "; ".join(data.settings), "",
              "Verdicts on the paper's claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())
              + f" (and {len(checks)} checks of our implementation and {len(beyond)} questions beyond the paper, "
              "not counted)", ""]
    for kind, _, title, intro in data.sections:
        rows = cl[cl.kind == kind]
        if not len(rows):
            continue
        lines += [f"## {title}", "", *([intro, ""] if intro else []),
                  "| figure | claim | paper | measured (mean ± std over seeds, n, range) | rule | verdict |",
                  "|---|---|---|---|---|---|"]
        for c in rows.itertuples():
            fig = f"[{c.figure}]({c.figure}.png)" if c.figure in figures else c.figure
            verdict = f"**{c.verdict}**" + (f"; {c.ordering}" if c.ordering else "")
            cells = [fig, f"{c.claim} (lr {c.lr:g})", c.paper, c.evidence, c.rule, verdict]
            lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        lines.append("")
        if kind == "extension" and data.beyond:
            lines += [data.beyond, ""]
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
              f"{_minutes(w.fastest_min)} | {_minutes(w.total_min)} |" for w in data.wall.itertuples()]
    lines += ["", "Definitions: `ics_study/analysis/report.py`, `ics_study/analysis/claims.py` (statistics, tolerances), "
              "`ics_study/analysis/verdicts.py` (rules: with >= 3 seeds a side, \"reproduced\" needs every run of one "
              "side beyond every run of the other).", ""]
    return "\n".join(lines)
