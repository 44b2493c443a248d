"""Figures beyond the paper (issue 29), each ``Runs -> matplotlib Figure`` from the per-run table only:

- ``fig_noise_strength``: speed and accuracy of the noisy BN against the noise's strength k;
- ``fig_noise_granularity``: the same against who shares a shift (channel, layer, position) and how
  long it is held (every step, 100 steps, the whole run);
- ``fig_normalisers``: speed, ICS, beta-smoothness and the stability statistic, one column per normaliser;
- ``fig_eos`` (issue 30): beta-smoothness and the top Hessian eigenvalue against 2/lr.

Every panel shows each seed as a dot and the mean over seeds with a min-max bar; BN and the standard
net at the same learning rate are dashed reference lines with their seed range shaded.
"""

from __future__ import annotations

from itertools import zip_longest

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ...config import ABLATIONS, NoiseConfig
from ..aggregate import KEEPS_DIVERGED, at_chance, one_per_seed
from ..claims import FAIL_ACC
from ..runs import Runs
from ..scaling import BETA, EOS_NETWORKS, GRADIENT, TOP, eos_runs, exponent
from .panels import seed_lines
from .paper import PAPER_LR, MissingRuns
from .style import color, figure, finish, label

REFERENCES = ("vgg", "vgg_bn")  # the standard and BN nets: every extension figure's reference lines
NOISY = "vgg_bn_noise"
NORMALISERS = ["vgg_ln", "vgg_gn", "vgg_ws_gn", "vgg_bn_center", "vgg_bn_scale", "vgg_bn_running"]
TIMES = {1: "redrawn every step", 100: "redrawn every 100 steps", 0: "held for the run"}  # redraw_every -> text
SPEED = [("auc_train_acc", "train-curve area (mean train acc.)", False),
         ("steps_to_50", "steps to 50% train acc.", False),
         ("steps_to_80", "steps to 80% train acc.", False),
         ("final_test_acc_last3", "test acc., as trained (last 3 evaluations)", False),
         # the noisy nets' test accuracy depends on the BN statistics it is read with: as trained under
         # the noise (the panel before: the default evaluation), or re-estimated on clean batches. The
         # first alone read as "noise ruins generalisation" where mostly the running statistics are off.
         ("final_test_acc_recalibrated", "test acc., BN statistics re-estimated (noisy nets)", False)]


def _at_lr(runs: Runs) -> pd.DataFrame:
    """The runs at lr 0.1, each training once (``one_per_seed``: a seed in two sweeps is one dot)."""
    t = runs.table
    return one_per_seed(t[t.lr == PAPER_LR])


def _noisy(table: pd.DataFrame, *varying: str) -> pd.DataFrame:
    """The noisy-BN runs that differ from Algorithm 1 (NoiseConfig's defaults) in the options ``varying``
    at most, with those options as columns (defaults where the table predates them): the strength
    figure must not read the granularity sweep's k = 1 runs as more seeds of k = 1."""
    t = table[table.variant.str.startswith(NOISY + "[") | (table.variant == NOISY)].copy()
    keep = pd.Series(True, index=t.index)
    for option in ABLATIONS:
        column, default = f"noise_{option}", getattr(NoiseConfig, option)
        t[column] = t[column].fillna(default) if column in t else default
        if option not in varying:
            keep &= t[column] == default
    return t[keep].astype({"noise_strength": float, "noise_redraw_every": int})


def _references(ax, table: pd.DataFrame, column: str) -> None:
    """BN and the standard net: dashed lines at their mean, their seed range shaded (a "steps to"
    that some seed never reached: said in the panel instead)."""
    missing = []
    for variant in REFERENCES:
        runs = table[table.variant == variant][column].astype(float)
        v = runs.dropna()
        if len(v) < len(runs) and column.startswith("steps_to"):
            missing.append(f"{label(variant)}: {len(runs) - len(v)}/{len(runs)} seeds never got there")
        if len(v):
            ax.axhline(v.mean(), color=color(variant), ls="--", lw=0.8, label=f"{label(variant)} (lr {PAPER_LR:g})")
            ax.axhspan(v.min(), v.max(), color=color(variant), alpha=0.12, lw=0)
    if missing:
        ax.text(0.02, 0.02, "\n".join(missing), transform=ax.transAxes, va="bottom", fontsize=5)


def _panels(table: pd.DataFrame, specs: list, rows: int = 1, height: float = 2.0):
    """The figure and, for each (column, title, log) of ``specs`` that the table has, its panel with BN's
    and the standard net's reference lines drawn, as (index, ax, column, title, log); a panel whose
    statistic the table lacks is left blank."""
    fig, axes = figure(rows, -(-len(specs) // rows), height_per_row=height)
    panels = []
    for n, (ax, (column, title, log)) in enumerate(zip_longest(axes.flat, specs, fillvalue=(None, None, None))):
        if column not in table:  # a statistic the table lacks, or a grid cell past the last panel
            ax.set_axis_off()
            continue
        _references(ax, table, column)
        if column.startswith("steps_to"):
            # from 0 (a "steps to" read on a 5-step axis looked like a spread), and headroom over the
            # run's last step for the "never got there" marks, which hid seeds that got there late
            top = float(table.max_steps.max()) if "max_steps" in table else np.nan
            ax.set_ylim(0, 1.3 * top if np.isfinite(top) else None)
        panels.append((n, ax, column, title, log))
    return fig, axes, panels


def _points(ax, x: float, values: pd.Series, colour: str, name: str | None = None, marker: str = "o",
            row: int = 0) -> None:
    """Each seed a dot, the mean a larger marker with a min-max bar; a "never got there" count in text
    row ``row`` under the top (series side by side: one row each, or their counts run together)."""
    values = values.astype(float)
    v = values.dropna()
    if len(v) < len(values):  # a "steps to" some seeds never reached: an x at the top, with the count
        ax.plot([x], [0.97], "x", color=colour, ms=4, transform=ax.get_xaxis_transform())
        ax.annotate(f"{len(values) - len(v)}/{len(values)}", (x, 0.97), xycoords=ax.get_xaxis_transform(),
                    xytext=(0, -9 - 6 * row), textcoords="offset points", ha="center", fontsize=5, color=colour)
    if not len(v):
        return
    ax.scatter(np.full(len(v), x), v, s=4, color=colour, alpha=0.6, lw=0)
    low, high = max(v.mean() - v.min(), 0.0), max(v.max() - v.mean(), 0.0)  # equal seeds: rounding below 0
    ax.errorbar([x], [v.mean()], yerr=[[low], [high]], color=colour, marker=marker,
                ms=3.5, capsize=2, lw=0.9, label=name)


# how the steps-to panels read, in the title of every figure that draws them
STEPS_TO = "steps to X%: the seeds that got there, x n/m: m seeds of which n never did"


def fig_noise_strength(runs: Runs):
    """Speed and final accuracy of the noisy BN against the strength k of its noise."""
    table = _at_lr(runs)
    noisy = _noisy(table, "strength")
    if noisy.noise_strength.nunique() < 2:
        raise MissingRuns("noisy-BN runs at two or more noise strengths (experiment=noise_strength)")
    ks = sorted(noisy.noise_strength.unique())
    fig, axes, panels = _panels(table, SPEED, rows=2)
    for _, ax, column, ylabel, _ in panels:
        # the strengths evenly spaced: on a linear k axis 0, 0.5 and 1 crowded into one label
        for i, k in enumerate(ks):
            _points(ax, i, noisy[noisy.noise_strength == k][column], color(NOISY),
                    label(NOISY) + " (mean, seed range)" if k == ks[0] else None)
        means = [noisy[noisy.noise_strength == k][column].astype(float).mean() for k in ks]
        ax.plot(range(len(ks)), means, color=color(NOISY), lw=0.8)
        ax.set(xlabel="noise strength k", title=ylabel, xticks=range(len(ks)), xticklabels=[f"{k:g}" for k in ks])
    return finish(fig, axes[0][0], f"Beyond the paper: how strong must the shift be? Noisy BN at lr {PAPER_LR:g}, "
                  f"every range of Algorithm 1 scaled by k (0: plain BN, 1: the paper); {STEPS_TO} ({_seeds(noisy)})")


def fig_noise_granularity(runs: Runs):
    """Speed and final accuracy against who shares (mu_t, sigma_t) and how long they are held."""
    table = _at_lr(runs)
    noisy = _noisy(table, "granularity", "redraw_every")
    if len(noisy[["noise_granularity", "noise_redraw_every"]].drop_duplicates()) < 2:
        raise MissingRuns("noisy-BN runs at two or more granularities or redraw intervals (experiment=noise_granularity)")
    grains = [g for g in ("channel", "layer", "position") if g in set(noisy.noise_granularity)]
    times = [t for t in TIMES if t in set(noisy.noise_redraw_every)]
    colours = dict(zip(TIMES, ("#2ca02c", "#17becf", "#bcbd22")))
    fig, axes, panels = _panels(table, SPEED, rows=2)
    for _, ax, column, ylabel, _ in panels:
        for j, every in enumerate(times):
            cells = [(i, noisy[(noisy.noise_granularity == g) & (noisy.noise_redraw_every == every)]) for i, g in
                     enumerate(grains)]
            cells = [(i, cell) for i, cell in cells if len(cell)]  # a sweep may lack a granularity at this time
            for n, (i, cell) in enumerate(cells):
                _points(ax, i + (j - (len(times) - 1) / 2) * 0.2, cell[column], colours[every],
                        f"(mu, sigma) {TIMES[every]}" if n == 0 else None, marker="os^"[j % 3], row=j)
        ax.set(xticks=range(len(grains)), xticklabels=grains, title=ylabel,
               xlabel="one (mu, sigma) per", xlim=(-0.6, len(grains) - 0.4))
    return finish(fig, axes[0][0], f"Beyond the paper: who shares the shift, and how long it is held. Noisy BN at "
                  f"lr {PAPER_LR:g}, k = 1; per-element parts fresh at every step; {STEPS_TO} ({_seeds(noisy)})")


NORMALISER_PANELS = [("auc_train_acc", "train-curve area", False),
                     ("mean/ics/layer05/l2_diff", r"ICS $\|G - G'\|$, layer #5", True),
                     ("mean/ics/layer10/l2_diff", r"ICS $\|G - G'\|$, layer #10", True),
                     ("final_test_acc_last3", "test accuracy (last 3 evaluations)", False),
                     ("mean/ics/layer05/cosine", r"ICS $\cos(G, G')$, layer #5", False),
                     ("mean/ics/layer10/cosine", r"ICS $\cos(G, G')$, layer #10", False),
                     ("settled/landscape/beta_smoothness", r"effective $\beta$-smoothness", True),
                     ("shift/pre_norm/w1_lag", "shift before the norm (W1)", True)]


def fig_normalisers(runs: Runs):
    """One column per normaliser, BN and the standard net first: speed, ICS, smoothness, stability."""
    table = _at_lr(runs)
    present = [v for v in NORMALISERS if v in set(table.variant)]
    if not present:
        raise MissingRuns(f"runs of {'/'.join(NORMALISERS)} (experiment=normalisers)")
    columns = [v for v in REFERENCES if v in set(table.variant)] + present
    fig, axes, panels = _panels(table, NORMALISER_PANELS, rows=2, height=3.0)  # room for upright names
    names = [label(v) + _diverged(table[table.variant == v]) for v in columns]
    for n, ax, column, title, log in panels:
        for i, variant in enumerate(columns):
            runs_v = table[table.variant == variant]
            if column != KEEPS_DIVERGED:  # a diverged run has no other value: no "never reached" marks
                runs_v = runs_v[runs_v.status != "diverged"]
            _points(ax, i, runs_v[column], color(variant))
        # upright: at 60 degrees eight names ran into each other in a quarter-width panel
        ax.set_xticks(range(len(columns)), names if n >= 4 else [], rotation=90)
        ax.set(title=title, yscale="log" if log else "linear", xlim=(-0.6, len(columns) - 0.4))
        if log:
            _log_labels(ax.yaxis)
    return finish(fig, axes[0][0], f"Beyond the paper: BN's parts and other normalisers at lr {PAPER_LR:g} (ICS: "
                  "mean after step 1; beta-smoothness: after the first 10% of steps; shift: Wasserstein-1 between a "
                  f"unit's consecutive histograms (probe.every steps apart) before the norm, over its spread; {_seeds(table)})")


def _diverged(runs_v: pd.DataFrame) -> str:
    """" (3/3 diverged)" after the name of a column whose runs diverged: their dots are missing from
    every panel but the train-curve area's, which a reader would otherwise take for runs never made."""
    d = int((runs_v.status == "diverged").sum()) if "status" in runs_v else 0
    return f" ({d}/{len(runs_v)} diverged)" if d else ""


EOS_SERIES = [("landscape/beta_smoothness", BETA, r"effective $\beta$-smoothness"),
              ("sharpness/top_eigenvalue", TOP, "top Hessian eigenvalue"),
              ("sharpness/gradient_curvature", GRADIENT, "curvature along\nthe gradient")]


def fig_eos(runs: Runs):
    """Effective beta-smoothness and the top Hessian eigenvalue over training, one panel per lr with
    the 2/lr line; beside them each network's settled value against 2/lr on log-log axes, with the
    fitted exponent s of settled ~ (2/lr)^s (``scaling.py``: 1 = set by the lr, 0 = not at all)."""
    t = eos_runs(runs.table)
    if t.empty:
        raise MissingRuns("VGG runs with the curvature probe on (experiment=edge_of_stability)")
    lrs = sorted(t.lr.unique())
    sub = Runs(t)
    # runs that ended at chance, by (variant, lr): a network that never trained is not at the edge of
    # stability, and its low curvature should not read as a smooth trained one's
    chance = at_chance(t).groupby([t.variant, t.lr]).agg(["sum", "size"])
    stuck = set(chance[chance["sum"] == chance["size"]].index)
    fig, axes = figure(len(EOS_SERIES), len(lrs) + 1, height_per_row=2.0)
    for row, (series, settled, name) in enumerate(EOS_SERIES):
        df = sub.metric(series)
        for j, lr in enumerate(lrs):
            ax = axes[row][j]
            seed_lines(ax, df[df.lr == lr] if len(df) else df, show_lr=False)
            ax.axhline(2 / lr, color="k", ls=":", lw=0.8, label="2 / lr")
            # The quantity names its row (the first panel's y label): five panels to a page's width
            # leave a title about 20 characters.
            title = f"lr {lr:g}" + "".join(f"\n{label(v)}: {n}/{chance.loc[(v, lr), 'size']} at chance"
                                           for v in EOS_NETWORKS if (v, lr) in chance.index
                                           and (n := chance.loc[(v, lr), "sum"]))
            ax.set(yscale="log", title=title, xlabel="steps" if row == len(EOS_SERIES) - 1 else None,
                   ylabel=None if j else name)
            _log_labels(ax.yaxis)
        ax = axes[row][-1]
        for variant in [v for v in EOS_NETWORKS if v in set(t.variant)]:
            g = t[t.variant == variant].groupby("lr")[settled]
            mean, low, high = g.mean(), g.min(), g.max()
            x = 2 / mean.index.to_numpy()
            ax.errorbar(x, mean, yerr=[np.maximum(mean - low, 0), np.maximum(high - mean, 0)], color=color(variant),
                        capsize=2, lw=0.9)
            hollow = np.array([(variant, at) in stuck for at in mean.index], dtype=bool)
            ax.plot(x[~hollow], mean[~hollow], "o", ms=3.5, color=color(variant), zorder=3)
            ax.plot(x[hollow], mean[hollow], "o", ms=4, mfc="white", mec=color(variant), mew=1.0, zorder=3)
        fits = [(v, e) for v in EOS_NETWORKS if (e := exponent(t, v, settled)) is not None]
        # Under the title, one per network in its colour: inside, a sixth of the page's width, they hid data.
        for i, (variant, e) in enumerate(reversed(fits)):  # a line each, the first network on top
            ax.annotate(f"{label(variant)}: s = {e.mean:.2f}", (0.5, 1.0), xytext=(0, 3 + 8 * i), xycoords="axes fraction",
                        textcoords="offset points", color=color(variant), fontsize=6.5, va="bottom", ha="center")
        edge = 2 / np.array(lrs)
        ax.plot(edge, edge, "k:", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel="2 / lr" if row == len(EOS_SERIES) - 1 else None,
               title="settled vs 2 / lr" + "\n" * len(fits))  # blank lines: room for each network's s
        _log_labels(ax.xaxis, decades=True)  # a sixth of the width: "5 10 20 50 100" ran together
        _log_labels(ax.yaxis)
    return finish(fig, axes[0][0], "Beyond the paper: the edge of stability. Effective beta-smoothness (the paper's "
                  "Figure 4c), the top eigenvalue of the batch loss's Hessian and its curvature along the step's gradient "
                  "(g'Hg / |g|^2, the batch sharpness of SGD's edge of stability; below zero, mostly in the first steps, it falls off "
                  "the log axis) against 2/lr, the level gradient "
                  f"descent's sharpness settles at (Cohen et al. 2021); dotted: 2/lr. Right: each network's mean after the first "
                  f"10% of steps, seeds' mean and range, and s (in the network's colour): its exponent in (2/lr)^s, fitted "
                  f"per seed where every seed trained (1: set by the lr, 0: not at all). At chance: ended below {FAIL_ACC:g} train accuracy (hollow: every "
                  f"seed; {_seeds(t)})")


class _LogTicks(LogLocator):
    """Ticks at 1, 2, 5 x 10^k; over more than about two decades at the powers of ten only (a panel
    two inches high had a label on every tick, and with three per decade over four decades
    matplotlib's LogLocator gave none at all)."""

    def __init__(self, decades: bool = False):
        super().__init__()
        self.decades = decades  # powers of ten whatever the range (a narrow panel)

    def tick_values(self, vmin, vmax):
        wide = self.decades or (vmin > 0 and vmax / vmin > 150)
        self.set_params(subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=12)  # 12: every decade, no stride
        return super().tick_values(vmin, vmax)


def _log_labels(axis, decades: bool = False) -> None:
    """Plain numbers at ``_LogTicks``: a decade's minor labels crowded an axis, and a short range had
    none at all."""
    axis.set_major_locator(_LogTicks(decades))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}" if v >= 100 else f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def _seeds(table: pd.DataFrame) -> str:
    n = table.groupby("variant").seed.nunique() if len(table) else pd.Series(dtype=int)
    return f"{n.min()}-{n.max()} seeds per setting" if len(n) and n.min() != n.max() else f"{n.max() if len(n) else 0} seeds"


FIGURES = {"fig_noise_strength": fig_noise_strength, "fig_noise_granularity": fig_noise_granularity,
           "fig_normalisers": fig_normalisers, "fig_eos": fig_eos}
