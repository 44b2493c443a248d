"""A sweep's jobs at a glance, and one tidy table for the whole sweep.

    ics-study sweep PATH          # table: job, status, swept values, progress, final metrics (failed stand out)
    ics-study aggregate PATH      # PATH/aggregate.parquet (+ .csv): one row per job and metric

A job is a folder with ``.hydra/overrides.yaml``; its state comes from ``status.json`` (written
as it runs), ``summary.json`` (at the end) and its ``metrics`` table. The swept values are the
overrides that differ between jobs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from .errors import UserError

FINAL_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def jobs(path: str | Path) -> pd.DataFrame:
    """One row per job: job, status, error, steps, max_steps, the overrides, final metrics."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root} does not exist; give a sweep folder (results/multiruns/DATE/TIME)")
    rows = []
    for overrides_file in sorted(root.rglob(".hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        overrides = dict(o.split("=", 1) for o in yaml.safe_load(overrides_file.read_text()) or [] if "=" in o)
        status, summary = _read_json(job / "status.json"), _read_json(job / "summary.json")
        cfg = yaml.safe_load((job / "config.yaml").read_text()) if (job / "config.yaml").exists() else {}
        state = summary.get("status") or status.get("status") or "pending"
        row = {"job": job.name, "path": str(job), "status": state, "error": status.get("error", ""),
               "steps": summary.get("steps", status.get("steps", 0)),
               "max_steps": summary.get("max_steps", (cfg.get("trainer") or {}).get("max_steps")),
               "diverged_at": summary.get("diverged_at"), **{f"override:{k}": v for k, v in overrides.items()}}
        row.update({m: (summary.get("final") or {}).get(m) for m in FINAL_METRICS})
        rows.append(row)
    if not rows:
        raise UserError(f"no sweep jobs (folders with .hydra/overrides.yaml) under {root}")
    table = pd.DataFrame(rows)
    swept = [c for c in table.columns if c.startswith("override:") and table[c].nunique(dropna=False) > 1]
    fixed = [c for c in table.columns if c.startswith("override:") and c not in swept]
    return table.drop(columns=fixed).rename(columns={c: c.split(":", 1)[1] for c in swept})


def _int(v) -> str:
    return str(int(v)) if isinstance(v, (int, float)) and v == v else "?"


def status_table(table: pd.DataFrame) -> str:
    swept = [c for c in table.columns if c not in {"job", "path", "status", "error", "steps", "max_steps",
                                                    "diverged_at", *FINAL_METRICS}]
    lines = ["| job | status | " + " | ".join(swept) + " | progress | train acc | test acc | note |",
             "|---" * (len(swept) + 6) + "|"]
    for r in table.to_dict("records"):
        status = r["status"]
        mark = {"failed": "FAILED !!", "diverged": "diverged", "interrupted": "interrupted"}.get(status, status)
        note = r["error"] if status == "failed" else (f"at step {_int(r['diverged_at'])}" if status == "diverged" else "")
        acc = [f"{r[m]:.3f}" if isinstance(r[m], (int, float)) and r[m] == r[m] else "-" for m in ("train_acc", "test_acc")]
        lines.append(f"| {r['job']} | {mark} | " + " | ".join(str(r[c]) for c in swept)
                     + f" | {_int(r['steps'])}/{_int(r['max_steps'])} | {acc[0]} | {acc[1]} | {note} |")
    counts = table.status.value_counts().to_dict()
    lines.append("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" of {len(table)} jobs")
    return "\n".join(lines)


def aggregate(path: str | Path) -> pd.DataFrame:
    """One row per job and metric: the swept values as columns, then metric and value.

    Metrics: the last value of every series in the job's ``metrics`` table (``train/acc``,
    ``test/acc``, ``ics/...``, ``landscape/...``), plus ``summary/...`` entries (wall time, images/s)."""
    table = jobs(path)
    swept = [c for c in table.columns if c not in {"job", "path", "status", "error", "steps", "max_steps",
                                                    "diverged_at", *FINAL_METRICS}]
    rows = []
    for job in table.to_dict("records"):
        base = {"job": job["job"], "status": job["status"], **{c: job[c] for c in swept}}
        metrics_dir = Path(job["path"]) / "metrics"
        if metrics_dir.exists():
            m = pd.read_parquet(metrics_dir)
            m = m.assign(metric=m.metric.astype(str)).sort_values("step")
            for name, g in m.groupby("metric", sort=True):
                rows.append({**base, "metric": name, "step": int(g.step.iloc[-1]), "value": float(g.value.iloc[-1])})
        summary = _read_json(Path(job["path"]) / "summary.json")
        for key in ("wall_time_s", "train_images_per_s", "steps"):
            if key in summary:
                rows.append({**base, "metric": f"summary/{key}", "step": summary.get("steps"), "value": float(summary[key])})
    return pd.DataFrame(rows)


def main_sweep(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study sweep", description="status of a sweep's jobs")
    ap.add_argument("path", help="a sweep folder (results/multiruns/DATE/TIME)")
    table = jobs(ap.parse_args(argv).path)
    print(status_table(table))
    return 1 if (table.status == "failed").any() else 0


def main_aggregate(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study aggregate", description="one tidy table for a whole sweep")
    ap.add_argument("path", help="a sweep folder")
    ap.add_argument("--out", default=None, help="output file stem (default PATH/aggregate)")
    args = ap.parse_args(argv)
    table = aggregate(args.path)
    stem = Path(args.out) if args.out else Path(args.path).expanduser() / "aggregate"
    table.to_parquet(stem.with_suffix(".parquet"), index=False)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    print(f"wrote {stem.with_suffix('.parquet')} and .csv: {len(table)} rows, {table.job.nunique()} jobs", file=sys.stderr)
    return 0
