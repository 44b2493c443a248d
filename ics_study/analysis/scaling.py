"""How a network's settled curvature scales with the learning rate (issue 30).

Gradient descent's sharpness settles near 2/lr (Cohen et al. 2021). A network whose curvature is set
by the learning rate has curvature ~ (2/lr)^s with s = 1; one whose curvature is its own has s = 0.
"Within a factor 2 of 2/lr" at each lr (the claims) does not say which: this exponent does.

It is fitted per seed (one training per lr from the same initial weights and data order) by least
squares on log-log axes over the learning rates where every seed of the network trained (none
diverged, none ended at chance: a network that never trained has the curvature of its
initialisation), and reported as the seeds' mean and range. A statistic, not a
verdict: no tolerance on it was fixed before the data, so the report states it and judges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregate import at_chance, one_per_seed

EOS_NETWORKS = ["vgg", "vgg_bn", "vgg_ln", "vgg_gn"]  # experiment=edge_of_stability's networks
TOP = "settled/sharpness/top_eigenvalue"  # a run with the curvature probe on has it
BETA = "settled/landscape/beta_smoothness"
GRADIENT = "settled/sharpness/gradient_curvature"  # g'Hg / |g|^2: the "batch sharpness"


def eos_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The edge-of-stability runs: the networks above with the curvature probe on, one per seed
    and lr (the sweep's own lr-0.1 runs before the paper sweep's, which lack the probe)."""
    t = table[table.variant.isin(EOS_NETWORKS)]
    t = one_per_seed(t, TOP)
    return t[t[TOP].notna()] if TOP in t else t.iloc[:0]


@dataclass(frozen=True)
class Exponent:
    mean: float  # over the seeds' fits
    low: float
    high: float
    seeds: int  # seeds fitted (each over two learning rates or more)
    lrs: tuple[float, ...]  # the learning rates fitted
    left_out: tuple[tuple[float, str], ...]  # (lr, why): a run there diverged or ended at chance

    def describe(self) -> str:
        """``s = 0.92 (0.88-0.95, 3 seeds, lr 0.02-0.2)``, with the lrs left out and why."""
        spread = f"{self.low:.2f}-{self.high:.2f}, " if self.seeds > 1 else ""
        text = f"s = {self.mean:.2f} ({spread}{self.seeds} seed{'s' * (self.seeds > 1)}, lr {_span(self.lrs)}"
        if self.left_out:
            text += "; left out: " + ", ".join(f"lr {lr:g} ({why})" for lr, why in self.left_out)
        return text + ")"


def _span(lrs) -> str:
    return f"{min(lrs):g}-{max(lrs):g}" if len(lrs) > 1 else f"{lrs[0]:g}"


def exponent(runs: pd.DataFrame, variant: str, column: str) -> Exponent | None:
    """The exponent s of ``column`` ~ (2/lr)^s for ``variant`` among ``runs`` (``eos_runs``); None
    where fewer than two learning rates are left to fit."""
    t = runs[runs.variant == variant]
    chance, diverged = at_chance(t), t.status == "diverged"
    left_out = []
    for lr, g in t.groupby("lr"):
        why = [f"{k} of {len(g)} {word}" for k, word in ((diverged[g.index].sum(), "diverged"),
                                                          (chance[g.index].sum(), "at chance")) if k]
        if why:
            left_out.append((float(lr), ", ".join(why)))
    t = t[~t.lr.isin([lr for lr, _ in left_out])]
    t = t[t[column] > 0] if column in t else t.iloc[:0]  # on log axes; a missing value is no point
    slopes = []
    for _, g in t.groupby("seed"):
        if g.lr.nunique() >= 2:
            x, y = np.log(2 / g.lr.to_numpy(float)), np.log(g[column].to_numpy(float))
            slopes.append(np.polyfit(x, y, 1)[0])
    if not slopes:
        return None
    return Exponent(float(np.mean(slopes)), float(min(slopes)), float(max(slopes)), len(slopes),
                    tuple(sorted(t.lr.unique())), tuple(left_out))
