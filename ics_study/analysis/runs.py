"""Finished runs as data: find them under any mix of run and sweep dirs, and read their tables.

Figures use only this module (never the training code): which runs there are and what they are
comes from the aggregate table (``aggregate.py``); their per-step series and histograms from the
Parquet tables the recorder wrote in each run folder.

    runs = find_runs(["results/multiruns/2026-11-26/14-10-00"])
    runs.table          # one row per run: path, variant, lr, seed, status, steps, final metrics, ...
    runs.metric("train/acc")        # tidy: variant, lr, seed, step, value
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd

from .aggregate import load, per_run

ENDED = ("completed", "diverged")  # runs that figures and the report use


@cache
def _read_table(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


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
            frames.append(df.assign(variant=row.variant, lr=row.lr, seed=row.seed, run=row.path, status=row.status))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def metric(self, name: str) -> pd.DataFrame:
        """Rows of one metric from every run: variant, lr, seed, run, status, step, value."""
        m = self._joined("metrics", lambda d: d[d.metric == name])
        return m.drop(columns=["metric"]) if len(m) else m

    def activations(self, layer: int, stats=("mean", "var"), rank: int = 0, point: str = "pre_relu") -> pd.DataFrame:
        """Per-step statistics of the rank-``rank`` sampled channel of ``layer`` at ``point`` in every run."""
        frames = []
        for row in self.table.itertuples():
            chans = Path(row.path) / "probe_channels"
            if not chans.exists():
                continue
            c = _read_table(str(chans))
            channel = c[(c.layer == layer) & (c["rank"] == rank)].channel
            if not len(channel):
                continue
            a = at_point(_read_table(str(Path(row.path) / "activations")), point)
            a = a[(a.layer == layer) & (a.channel == int(channel.iloc[0])) & a.stat.isin(stats)]
            frames.append(a.assign(variant=row.variant, lr=row.lr, seed=row.seed, run=row.path, status=row.status,
                                    stat=a.stat.astype(str)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def histograms(self, run_path: str, layer: int, rank: int = 0, point: str = "pre_relu") -> pd.DataFrame:
        """Histogram rows (step, bin_edges, counts) of the rank-``rank`` channel of one run's layer at ``point``."""
        c = _read_table(str(Path(run_path) / "probe_channels"))
        channel = c[(c.layer == layer) & (c["rank"] == rank)].channel
        h = at_point(_read_table(str(Path(run_path) / "histograms")), point)
        if not len(channel):  # a shallower network than the figure's layer: nothing to draw
            return h.iloc[:0]
        return h[(h.layer == layer) & (h.channel == int(channel.iloc[0]))].sort_values("step")


def at_point(table: pd.DataFrame, point: str) -> pd.DataFrame:
    """The rows of a probe table at ``point`` (tables written before probe.points have one point and
    no column for it: all their rows)."""
    return table[table.point.astype(str) == point] if "point" in table else table


def find_runs(paths) -> Runs:
    """Every finished run under ``paths`` (run dirs or sweep dirs, searched recursively), as the
    aggregate table lists them (``aggregate.load``: a sweep's current ``aggregate.parquet``, or the
    same rows built in memory): one row per run with its identity, status and every per-run statistic
    (``aggregate.per_run``: final accuracies, speed, the means of ICS and the landscape, ...)."""
    table = per_run(load(paths))
    return Runs(table[table.status.isin(ENDED)])  # an interrupted run is half a curve: it waits for its resume
