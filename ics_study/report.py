"""``ics-study report PATH... [--out DIR]``: results per variant and learning rate, and the paper's claims.

Writes ``report.md``, ``results.csv`` (one row per variant and lr) and ``claims.csv`` (one row per
claim) from the aggregate table of the finished runs under PATH (``aggregate.py``: the sweep's
``aggregate.parquet`` where it is current, built in memory otherwise). Every per-run number comes
from that table; this module only groups, compares and writes. Definitions:

- final train acc: per run, the mean batch accuracy over the last 5% of its steps (the last batch
  alone is too noisy); final test acc: the full test set after the last step (``summary.json``);
  mean ± std over seeds;
- steps to X%: per run, the first step at which the 100-step rolling mean of the batch accuracy
  reaches X; the mean over seeds, or "not reached (k/n)" if some seed never got there;
- "ahead by": a difference of seed means, called significant when it exceeds twice the larger
  seed standard deviation (or, for single runs, any difference);
- ICS, smoothness and drift claims: the mean over runs of each run's mean over its probed steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import THRESHOLDS, load, per_run
from .errors import UserError


def results_table(runs_df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (variant, lr), g in runs_df.groupby(["variant", "lr"], sort=True):
        row = {"variant": variant, "lr": lr, "seeds": len(g), "diverged": int((g.status == "diverged").sum()),
               "train_acc_mean": g.final_train_acc.mean(), "train_acc_std": g.final_train_acc.std(ddof=0),
               "test_acc_mean": g.final_test_acc.astype(float).mean(), "test_acc_std": g.final_test_acc.astype(float).std(ddof=0)}
        for th in THRESHOLDS:
            col = f"steps_to_{round(th * 100)}"
            vals = g[col] if col in g else pd.Series(dtype=float)
            row[col] = vals.mean() if len(vals) and vals.notna().all() else np.nan
            row[f"{col}_reached"] = f"{int(vals.notna().sum())}/{len(g)}"
        out.append(row)
    return pd.DataFrame(out)


def _get(res: pd.DataFrame, variant: str, lr: float = 0.1):
    r = res[(res.variant == variant) & np.isclose(res.lr, lr)]
    return r.iloc[0] if len(r) else None


def _ahead(a, b, key: str) -> tuple[float, bool]:
    diff = a[f"{key}_mean"] - b[f"{key}_mean"]
    noise = 2 * max(np.nan_to_num(a[f"{key}_std"]), np.nan_to_num(b[f"{key}_std"]))
    return diff, diff > noise


def _run_mean(table: pd.DataFrame, variant: str, column: str, lr: float = 0.1) -> float:
    """Mean over the variant's runs at ``lr`` of a per-run column (NaN if no run has it)."""
    if column not in table:
        return np.nan
    vals = table[(table.variant == variant) & np.isclose(table.lr, lr)][column].dropna()
    return float(vals.mean()) if len(vals) else np.nan


def claims(table: pd.DataFrame, res: pd.DataFrame) -> pd.DataFrame:
    rows = []

    def add(claim, paper, measured, verdict):
        rows.append({"claim": claim, "paper": paper, "measured": measured, "verdict": verdict})

    std, bn, noisy = _get(res, "vgg"), _get(res, "vgg_bn"), _get(res, "vgg_bn_noise")
    if std is not None and bn is not None:
        s99, b99 = std.get("steps_to_99"), bn.get("steps_to_99")
        if np.isnan(b99):
            add("BN reaches 99% train accuracy before standard (lr 0.1)", "BN ~3-5k steps, standard ~8-10k",
                f"BN reached 99% in {bn['steps_to_99_reached']} runs, standard in {std['steps_to_99_reached']}",
                "not measured (BN did not reach 99% in these runs)")
        else:
            later = np.isnan(s99) or b99 < s99
            add("BN reaches 99% train accuracy before standard (lr 0.1)", "BN ~3-5k steps, standard ~8-10k",
                f"BN {b99:.0f} steps, standard {'not reached' if np.isnan(s99) else f'{s99:.0f} steps'}",
                "reproduced" if later else "not reproduced")
        diff, sig = _ahead(bn, std, "train_acc")
        add("BN trains faster than standard (final train accuracy, lr 0.1)", "BN far ahead until ~10k steps",
            f"BN {bn.train_acc_mean:.3f} vs standard {std.train_acc_mean:.3f} (+{diff:.3f})",
            "reproduced" if sig else "not reproduced")
        diff, _ = _ahead(bn, std, "test_acc")
        add("BN generalises better (final test accuracy, lr 0.1)", "BN 83% vs standard 80%",
            f"BN {bn.test_acc_mean:.3f} vs standard {std.test_acc_mean:.3f}", "reproduced" if diff > 0 else "not reproduced")
    else:
        add("BN trains faster than standard", "BN far ahead until ~10k steps", "-", "not measured (needs vgg and vgg_bn runs)")
    std5, bn5 = _get(res, "vgg", 0.5), _get(res, "vgg_bn", 0.5)
    if std5 is not None and bn5 is not None:
        ok = std5.test_acc_mean < 0.15 and bn5.test_acc_mean > 0.3
        add("At lr 0.5 the standard net fails, the BN net trains", "standard ~10%, BN ~81% test accuracy",
            f"standard {std5.test_acc_mean:.3f}, BN {bn5.test_acc_mean:.3f} test accuracy ({int(std5.diverged)} standard runs diverged)",
            "reproduced" if ok else "not reproduced")
    else:
        add("At lr 0.5 the standard net fails, the BN net trains", "standard ~10%, BN ~81%", "-",
            "not measured (needs lr 0.5 runs: experiment=fig1)")
    if noisy is not None and bn is not None and std is not None:
        gap = bn.train_acc_mean - noisy.train_acc_mean
        ok = gap <= 0.05 and noisy.train_acc_mean > std.train_acc_mean
        add('"Noisy" BN trains about as fast as BN (final train accuracy, lr 0.1)', "both ~100% by 3-5k steps",
            f"noisy {noisy.train_acc_mean:.3f}, BN {bn.train_acc_mean:.3f}, standard {std.train_acc_mean:.3f}",
            "reproduced" if ok else "not reproduced")
        d_noisy, d_std = (_run_mean(table, v, "drift/unit_mean") for v in ("vgg_bn_noise", "vgg"))
        measured = f"mean step-to-step change of the unit's mean: noisy {d_noisy:.2e} vs standard {d_std:.2e}"
        verdict = "not measured (no activation tables)" if np.isnan(d_noisy) or np.isnan(d_std) else (
            "reproduced" if d_noisy > d_std else "not reproduced")
        add('"Noisy" BN activations drift more than standard (layers #2, #9, #13)', "visibly less stable",
            measured, verdict)
    else:
        add('"Noisy" BN trains about as fast as BN', "both ~100% by 3-5k steps", "-",
            "not measured (needs experiment=fig2)")
    for layer in (5, 10):
        s, b = (_run_mean(table, v, f"mean/ics/layer{layer:02d}/l2_diff") for v in ("vgg", "vgg_bn"))
        verdict = "not measured (needs experiment=fig3)" if np.isnan(s) or np.isnan(b) else (
            "reproduced" if b >= 0.5 * s else "not reproduced")
        add(f"BN does not reduce ICS, layer #{layer} (mean ‖G - G'‖, lr 0.1)", "BN similar or larger",
            "-" if np.isnan(s) else f"BN {b:.3g} vs standard {s:.3g}", verdict)
    s, b = (_run_mean(table, v, "mean/landscape/beta_smoothness") for v in ("vgg", "vgg_bn"))
    verdict = "not measured (needs experiment=fig4)" if np.isnan(s) or np.isnan(b) else (
        "reproduced" if b < s else "not reproduced")
    add("BN's effective beta-smoothness is lower (mean over probed steps, lr 0.1)", "BN flat ~20, standard up to ~45",
        "-" if np.isnan(s) else f"BN {b:.3g} vs standard {s:.3g}", verdict)
    return pd.DataFrame(rows)


def _fmt(mean, std) -> str:
    return "-" if pd.isna(mean) else f"{mean:.3f} ± {0 if pd.isna(std) else std:.3f}"


def render(res: pd.DataFrame, cl: pd.DataFrame, table: pd.DataFrame) -> str:
    lines = ["# ics-study report", "", f"{len(table)} runs from: " + ", ".join(sorted({str(Path(p).parent) for p in table.path})), ""]
    notes = sorted({f"{d} data, width {w:g}, {s} steps, {p}" for d, w, s, p in
                    zip(table.data, table.width, table.max_steps, table.precision)})
    lines += ["Settings: " + "; ".join(notes), "", "## Results per variant and learning rate", "",
              "| variant | lr | seeds | final train acc | final test acc | steps to 90% | steps to 99% | diverged |",
              "|---|---|---|---|---|---|---|---|"]
    for r in res.itertuples():
        st = [f"{getattr(r, c):.0f}" if not pd.isna(getattr(r, c)) else f"not reached ({getattr(r, c + '_reached')})"
              for c in ("steps_to_90", "steps_to_99")]
        lines.append(f"| {r.variant} | {r.lr:g} | {r.seeds} | {_fmt(r.train_acc_mean, r.train_acc_std)} | "
                     f"{_fmt(r.test_acc_mean, r.test_acc_std)} | {st[0]} | {st[1]} | {r.diverged} |")
    lines += ["", "## The paper's claims", "", "| claim | paper | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.paper} | {c.measured} | **{c.verdict}** |" for c in cl.itertuples()]
    lines += ["", "Definitions: see `ics_study/report.py` (final train acc = mean batch accuracy over the last 5% of "
              "steps; steps to X% = first step where the 100-step rolling mean reaches X).", ""]
    return "\n".join(lines)


def make_report(paths, out: Path, notes: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = per_run(load(paths))
    res = results_table(table)
    cl = claims(table, res)
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "results.csv", index=False)
    cl.to_csv(out / "claims.csv", index=False)
    text = render(res, cl, table)
    if notes is not None:
        text += "\n" + Path(notes).read_text()
    (out / "report.md").write_text(text)
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
    print(f"wrote {Path(args.out) / 'report.md'}, results.csv, claims.csv", file=sys.stderr)
    return 0
