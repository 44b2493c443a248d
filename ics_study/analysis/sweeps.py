"""A sweep's jobs at a glance (one tidy table for the whole sweep: ``aggregate.py``).

    ics-study sweep PATH          # table: job, status, swept values, progress, final metrics (failed stand out)

A job is a folder with ``.hydra/overrides.yaml`` (or, for runs made without Hydra, ``summary.json``);
its state comes from ``status.json`` (written as it runs), ``summary.json`` (at the end) and its
``metrics`` table. The swept values are the overrides that differ between jobs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from ..errors import UserError
from .run_records import read_status, read_summary

FINAL_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def jobs(path: str | Path) -> pd.DataFrame:
    """One row per job: job, status, error, steps, max_steps, the overrides, final metrics."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UserError(f"{root} does not exist; give a sweep folder (results/multiruns/DATE/TIME)")
    rows = []
    found = {f.parent.parent for f in root.rglob(".hydra/overrides.yaml")} | {s.parent for s in root.rglob("summary.json")}
    for job in sorted(found):
        overrides_file = job / ".hydra" / "overrides.yaml"
        listed = yaml.safe_load(overrides_file.read_text()) or [] if overrides_file.exists() else []
        overrides = dict(o.split("=", 1) for o in listed if "=" in o)
        status, summary = read_status(job), read_summary(job)
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


def main_sweep(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study sweep", description="status of a sweep's jobs")
    ap.add_argument("path", help="a sweep folder (results/multiruns/DATE/TIME)")
    table = jobs(ap.parse_args(argv).path)
    print(status_table(table))
    return 1 if (table.status == "failed").any() else 0
