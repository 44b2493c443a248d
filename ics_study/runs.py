"""Finished runs as data: find them under any mix of run and sweep dirs, and read their tables.

Figures and reports use only this module (never the training code): a run is a folder with
``summary.json`` and ``config.yaml``; its tables are the Parquet folders the recorder wrote.

    runs = find_runs(["results/multiruns/2026-11-26/14-10-00"])
    runs.table          # one row per run: path, variant, lr, seed, status, steps, final metrics, ...
    runs.metric("train/acc")        # tidy: variant, lr, seed, step, value
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from .errors import UserError


@cache
def _read_table(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def run_info(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    model = cfg["model"]
    variant = model["name"] if model["arch"] != "dln" else f"dln_{model['norm']}"
    final = summary.get("final", {})
    return {
        "path": str(run), "variant": variant, "norm": model["norm"], "lr": float(cfg["optim"]["lr"]),
        "seed": int(cfg["seed"]), "width": float(model.get("width", 1.0)), "precision": cfg["trainer"]["precision"],
        "max_steps": int(cfg["trainer"]["max_steps"]), "status": summary["status"], "steps": summary["steps"],
        "diverged_at": summary.get("diverged_at"), "final_train_acc": final.get("train_acc"),
        "final_test_acc": final.get("test_acc"), "final_train_loss": final.get("train_loss"),
        "ics": bool(cfg.get("ics", {}).get("enabled")), "landscape": bool(cfg.get("landscape", {}).get("enabled")),
        "probe": bool(cfg.get("probe", {}).get("enabled")), "data": cfg["data"]["name"],
    }


@dataclass
class Runs:
    table: pd.DataFrame

    def select(self, **where) -> Runs:
        t = self.table
        for key, value in where.items():
            t = t[t[key].isin(value if isinstance(value, (list, tuple, set)) else [value])]
        return Runs(t)

    def __len__(self) -> int:
        return len(self.table)

    def _joined(self, name: str, filt=None) -> pd.DataFrame:
        frames = []
        for row in self.table.itertuples():
            folder = Path(row.path) / name
            if not folder.exists():
                continue
            df = _read_table(str(folder))
            if filt is not None:
                df = filt(df)
            frames.append(df.assign(variant=row.variant, lr=row.lr, seed=row.seed, run=row.path))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def metric(self, name: str) -> pd.DataFrame:
        """Rows of one metric from every run: variant, lr, seed, run, step, value."""
        m = self._joined("metrics", lambda d: d[d.metric == name])
        return m.drop(columns=["metric"]) if len(m) else m

    def activations(self, layer: int, stats=("mean", "var"), rank: int = 0) -> pd.DataFrame:
        """Per-step statistics of the rank-``rank`` sampled channel of ``layer`` in every run."""
        frames = []
        for row in self.table.itertuples():
            chans = Path(row.path) / "probe_channels"
            if not chans.exists():
                continue
            c = _read_table(str(chans))
            channel = c[(c.layer == layer) & (c["rank"] == rank)].channel
            if not len(channel):
                continue
            a = _read_table(str(Path(row.path) / "activations"))
            a = a[(a.layer == layer) & (a.channel == int(channel.iloc[0])) & a.stat.isin(stats)]
            frames.append(a.assign(variant=row.variant, lr=row.lr, seed=row.seed, run=row.path, stat=a.stat.astype(str)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def histograms(self, run_path: str, layer: int, rank: int = 0) -> pd.DataFrame:
        """Histogram rows (step, bin_edges, counts) of the rank-``rank`` channel of one run's layer."""
        c = _read_table(str(Path(run_path) / "probe_channels"))
        channel = c[(c.layer == layer) & (c["rank"] == rank)].channel
        h = _read_table(str(Path(run_path) / "histograms"))
        return h[(h.layer == layer) & (h.channel == int(channel.iloc[0]))].sort_values("step")


def find_runs(paths) -> Runs:
    """Every run under ``paths`` (run dirs or sweep dirs, searched recursively)."""
    found = []
    for p in map(Path, paths):
        p = p.expanduser()
        if not p.exists():
            raise UserError(f"{p} does not exist; give run or sweep folders (e.g. results/multiruns/...)")
        candidates = [p] if (p / "summary.json").exists() else sorted(s.parent for s in p.rglob("summary.json"))
        found += [c for c in candidates if (c / "config.yaml").exists()]
    if not found:
        raise UserError(f"no finished runs (folders with summary.json) under: {', '.join(map(str, paths))}")
    table = pd.DataFrame([run_info(r) for r in dict.fromkeys(found)])
    return Runs(table.sort_values(["variant", "lr", "seed"]).reset_index(drop=True))
