"""The paper's figures, each a function ``Runs -> matplotlib Figure`` that reads only the tables.

A figure whose runs are missing raises ``MissingRuns`` naming the runs it needs (the preset that
makes them); the caller prints that line and goes on.
"""

from __future__ import annotations

import pandas as pd

from ..aggregate import one_per_seed
from ..runs import Runs
from .panels import ridge, seed_band, seed_lines
from .style import figure, figure_over, finish, label, suptitle


class MissingRuns(Exception):
    pass


def _need(runs: Runs, what: str, **where) -> Runs:
    sub = runs.select(**where)
    if not len(sub):
        raise MissingRuns(f"needs {what}")
    return sub


NETWORKS = ["vgg", "vgg_bn", "vgg_bn_noise"]  # Figures 2, 3, 4 and 8 (the l_p nets: fig_lp; the DLN: fig_dln)
CONTROL = "vgg_noise"  # the noise without BN: in Figure 2's accuracy panel where its runs exist
# The distributions the paper's figures show: each layer's output as the next layer receives it
# before the ReLU (BN(+noise) output, or the conv output without a norm); every caption says so.
POINT = "pre_relu"
# The layer's input before the norm, where Figure 1's stability claim is judged (BN pins its output's
# moments). Figure 1 adds it as a column where the BN runs recorded it (probe.points).
BEFORE_NORM = "pre_norm"


def _unit(runs: Runs) -> str:
    """What the histograms are of, as the runs recorded it (probe.unit)."""
    units = set(runs.table.get("probe_unit", pd.Series(["channel"])).fillna("channel"))
    if units == {"position"}:
        return f"one (h, w) position of the rank-0 sampled channel over the batch, at {POINT}"
    return f"the rank-0 sampled channel over N·H·W at {POINT}" + ("" if units == {"channel"} else " (or one position)")
PAPER_LR = 0.1  # Figures 2, 4 and 8 and the l_p figures are at lr 0.1 (PROTOCOL.md)


def _at_lr(runs: Runs, lr: float = PAPER_LR) -> tuple[Runs, str]:
    """The runs at the paper's ``lr`` (or, without any, at the smallest lr there is) and a caption
    note that says which lr is shown and what is left out: a figure never mixes learning rates."""
    lrs = sorted(set(runs.table.lr))
    chosen = lr if lr in lrs else lrs[0]
    note = f"lr {chosen:g}" + ("" if chosen == lr else f" (no lr {lr:g} runs)")
    others = [f"{x:g}" for x in lrs if x != chosen]
    if others:
        note += f"; lr {', '.join(others)} not shown"
    return _once(runs.select(lr=chosen)), note


def _at_lrs(runs: Runs, lrs: tuple[float, ...]) -> tuple[Runs, str]:
    """The runs at the figure's own learning rates, and a caption note naming any left out."""
    others = sorted(set(runs.table.lr) - set(lrs))
    note = f"; lr {', '.join(f'{x:g}' for x in others)} not shown" if others else ""
    return _once(runs.select(lr=list(lrs))), note


def _once(runs: Runs) -> Runs:
    """Each training once: a seed that two sweeps trained (the edge-of-stability sweep retrains lr 0.1
    with the curvature probe) is the run that measured the most, not an average of both."""
    return Runs(one_per_seed(runs.table))


def _first_run(runs: Runs, variant: str, lr: float | None = None) -> str | None:
    t = runs.table[(runs.table.variant == variant) & runs.table.probe]
    if lr is not None:
        t = t[t.lr == lr]
    t = t.assign(bad=t.status != "completed").sort_values(["bad", "seed"])  # a finished run first
    return t.path.iloc[0] if len(t) else None


def _ridges(axes, runs: Runs, layers: list[int], columns: list[tuple[str, str]], lr: float | None) -> None:
    """One row per layer, one panel per (network, probe point), all panels of a row on one value axis:
    the widths of the distributions compare by eye (the cost: a narrow one may be a thin spike)."""
    for i, layer in enumerate(layers):
        drawn = []
        for j, (variant, point) in enumerate(columns):
            ax = axes[i][j]
            path = _first_run(runs, variant, lr)
            if path is None:
                ax.set_axis_off()
                continue
            ridge(ax, runs.histograms(path, layer, point=point), variant)
            ax.set_title(f"{label(variant)}, layer #{layer}" + (", before the norm" if point == BEFORE_NORM else ""))
            ax.set_xlabel("activation value")
            drawn.append(ax)
        if drawn:
            lo, hi = min(ax.get_xlim()[0] for ax in drawn), max(ax.get_xlim()[1] for ax in drawn)
            for ax in drawn:
                ax.set_xlim(lo, hi)


def _accuracy(ax, runs: Runs, split: str, smooth: int, legend: bool = True) -> None:
    n = seed_lines(ax, runs.metric(f"{split}/acc"), smooth=smooth)
    what = "training accuracy" + (f" ({smooth}-step mean)" if smooth > 1 else "") if split == "train" else "test accuracy"
    ax.set(xlabel="steps", ylabel=what, ylim=(0, 1.02))
    if n and legend:
        ax.legend(loc="upper left")


def _legend_below(fig, ax, columns: int) -> None:
    """``ax``'s legend under all the panels, as the other figures have it: inside the accuracy panel it
    covered the early curves, beside it the panel's column grew and squeezed the histograms, and
    above the panels it ran into the title."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=columns)


def fig1(runs: Runs):
    """Training and test accuracy, standard vs BN at lr 0.1 and 0.5; histograms of layers #3 and #11."""
    sub = _need(runs, "runs of vgg and vgg_bn (experiment=fig1)", variant=["vgg", "vgg_bn"])
    sub, left_out = _at_lrs(sub, (0.1, 0.5))
    if not len(sub):
        raise MissingRuns("needs runs of vgg and vgg_bn at lr 0.1 or 0.5 (experiment=fig1)")
    at_lr, note = _at_lr(sub)
    layers, columns = [3, 11], [("vgg", POINT), ("vgg_bn", POINT)]
    bn = _first_run(at_lr, "vgg_bn")
    before = bn is not None and len(at_lr.histograms(bn, layers[0], point=BEFORE_NORM)) > 0
    if before:  # BN's layer input too: the distribution the stability claim judges
        columns.append(("vgg_bn", BEFORE_NORM))
    fig, accuracy, axes = figure_over(2, 2, len(columns), height_per_row=1.7)
    _accuracy(accuracy[0], sub, "train", smooth=25, legend=False)
    _accuracy(accuracy[1], sub, "test", smooth=1, legend=False)
    _ridges(axes, at_lr, layers, columns, None)
    where = f" and, for BN, {BEFORE_NORM} (before the norm; the standard net's {POINT} is its {BEFORE_NORM})" if before else ""
    suptitle(fig, f"Figure 1: VGG with and without BatchNorm (histograms: {_unit(sub)}{where}, first seed, "
                  f"{note.split(';')[0]}{left_out})")
    _legend_below(fig, accuracy[0], columns=2)
    return fig


def fig2(runs: Runs):
    """Training accuracy of standard, BN and noisy BN; stacked histograms of layers #2, #9, #13."""
    variants = NETWORKS
    sub = _need(runs, "runs of vgg_bn_noise with vgg and vgg_bn (experiment=fig2)", variant="vgg_bn_noise")
    sub, note = _at_lr(runs.select(variant=variants + [CONTROL]))
    fig, (accuracy,), axes = figure_over(1, 3, 3, height_per_row=1.6)  # one wide panel on top, the control included
    _accuracy(accuracy, sub, "train", smooth=25, legend=False)
    _ridges(axes, sub.select(variant=variants), [2, 9, 13], [(v, POINT) for v in variants], None)
    # what the panels show, not what the paper concludes from them: the verdicts are the report's
    suptitle(fig, f"Figure 2: training accuracy and activation distributions with BN, noisy BN and neither "
                  f"(histograms: {_unit(sub)}; {note})")
    _legend_below(fig, accuracy, columns=2)
    return fig


def fig3(runs: Runs):
    """ICS ||G - G'|| (log) and cos(G, G') for layers #5 and #10, lr 0.1 and 0.01."""
    sub, left_out = _at_lrs(_need(runs, "runs with ics.enabled=true (experiment=fig3)", ics=True, variant=NETWORKS), (0.1, 0.01))
    fig, axes = figure(2, 2)
    for j, layer in enumerate((5, 10)):
        for i, (stat, ylabel) in enumerate((("l2_diff", r"$\|G - G'\|_2$"), ("cosine", r"$\cos(G, G')$"))):
            ax = axes[i][j]
            n = seed_lines(ax, sub.metric(f"ics/layer{layer:02d}/{stat}"))
            ax.set(xlabel="steps", ylabel=ylabel, title=f"layer #{layer}")
            if stat == "l2_diff" and n:
                ax.set_yscale("log")
    # 3 columns: in one row the 5 entries made the figure twice its width and shrank the panels
    return finish(fig, axes[0][0], f"Figure 3: internal covariate shift (Definition 2.1; lr 0.1 and 0.01{left_out})",
                  max_columns=3)


def fig4(runs: Runs):
    """Loss range, gradient predictiveness range and effective beta-smoothness along the gradient."""
    sub = _need(runs, "runs with landscape.enabled=true (experiment=fig4)", landscape=True, variant=NETWORKS)
    sub, note = _at_lr(sub)
    fig, axes = figure(1, 3, height_per_row=2.0)
    for ax, (lo, hi, ylabel) in zip(axes[0][:2], (("loss_min", "loss_max", "loss landscape"),
                                                   ("gradpred_min", "gradpred_max", "gradient predictiveness"))):
        seed_band(ax, sub.metric(f"landscape/{lo}"), sub.metric(f"landscape/{hi}"))
        ax.set(xlabel="steps", ylabel=ylabel, yscale="log")
    seed_lines(axes[0][2], sub.metric("landscape/beta_smoothness"))
    axes[0][2].set(xlabel="steps", ylabel=r"effective $\beta$-smoothness")
    return finish(fig, axes[0][0], f"Figure 4: the loss landscape along the gradient ({note})")


def fig8(runs: Runs):
    """|mu_{t+1}-mu_t|, |var_{t+1}-var_t|, mu_t - mu_0, var_t - var_0 of layers #2, #9, #13."""
    sub = _need(runs, "runs with activation probes (experiment=fig2)", probe=True, variant=NETWORKS)
    sub, note = _at_lr(sub)
    rows = [("mean", "diff", r"$|\mu_{t+1} - \mu_t|$"), ("var", "diff", r"$|\sigma^2_{t+1} - \sigma^2_t|$"),
            ("mean", "drift", r"$\mu_t - \mu_0$"), ("var", "drift", r"$\sigma^2_t - \sigma^2_0$")]
    fig, axes = figure(4, 3, height_per_row=1.4)
    for j, layer in enumerate((2, 9, 13)):
        acts = sub.activations(layer, point=POINT)
        for i, (stat, kind, ylabel) in enumerate(rows):
            ax = axes[i][j]
            a = acts[acts.stat == stat] if len(acts) else acts
            seed_lines(ax, moment_changes(a, kind), smooth=25, show_lr=False)
            ax.set(xlabel="steps" if i == 3 else None, ylabel=ylabel if j == 0 else None)
            if i == 0:
                ax.set_title(f"layer #{layer}")
            if kind == "diff" and len(a):
                ax.set_yscale("log")
    return finish(fig, axes[0][0], f"Figure 8: how much the moments of {_unit(sub)} move (rolling mean over 25 steps; {note})")


def moment_changes(a: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per run: |x_{t+1} - x_t| ("diff") or x_t - x_first ("drift") of a per-step statistic."""
    if a.empty:
        return a
    out = []
    for _, g in a.sort_values("step").groupby("run"):
        v = g.value.astype(float)
        g = g.assign(value=(v.diff().abs() if kind == "diff" else v - v.iloc[0]))
        out.append(g.dropna(subset=["value"]))
    return pd.concat(out, ignore_index=True)


def fig_lp(runs: Runs):
    """Figures 5, 6, 12: l_p normalisations: training accuracy, layer #11 histograms, beta-smoothness."""
    lp = ["vgg_lp1", "vgg_lp2", "vgg_lpinf"]
    _need(runs, "runs of vgg_lp1/vgg_lp2/vgg_lpinf (experiment=lp_norms)", variant=lp)
    both, note = _at_lr(runs.select(variant=lp + ["vgg", "vgg_bn"]))
    sub = both.select(variant=lp)
    fig, axes = figure(2, 3, height_per_row=1.7)
    _accuracy(axes[0][0], both, "train", smooth=25)
    seed_lines(axes[0][1], both.metric("landscape/beta_smoothness"))
    axes[0][1].set(xlabel="steps", ylabel=r"effective $\beta$-smoothness")
    handles, labels = axes[0][0].get_legend_handles_labels()  # in the free third panel: over the curves it hid them
    axes[0][0].get_legend().remove()
    axes[0][2].legend(handles, labels, loc="center left")
    axes[0][2].set_axis_off()
    _ridges(axes[1:], sub, [11], [(v, POINT) for v in lp], None)
    suptitle(fig, f"Figures 5, 6, 12: l_p normalisations (histograms: {_unit(sub)}; {note})")
    return fig


DLN_LR = 1e-6  # the paper's main lr for the deep linear network; its ICS claims hold at 1e-7 too: the cosine row shows both


def fig_dln(runs: Runs):
    """Deep linear network at lr 1e-6: training loss and beta-smoothness of every normalisation
    (Figures 9, 13); ICS at layers #9 and #17 and the landscape bands, with and without BN (Figures 3b,
    5b, 10: ten overlapping bands hid each other); cos(G, G') with and without BN at every lr run (the
    claims "almost no ICS" / "almost uncorrelated" are judged at lr 1e-6 and 1e-7)."""
    dln = _need(runs, "deep-linear-network runs (experiment=dln)", data="linear_regression")
    sub, note = _at_lr(dln, DLN_LR)
    pair = sub.select(variant=["dln_none", "dln_batch"])
    fig, axes = figure(3, 3)
    seed_lines(axes[0][0], sub.metric("train/loss"), show_lr=False)
    axes[0][0].set(xlabel="steps", ylabel="training loss", yscale="log")
    for j, layer in enumerate((9, 17)):
        seed_lines(axes[0][j + 1], pair.metric(f"ics/layer{layer:02d}/l2_diff"), show_lr=False)
        axes[0][j + 1].set(xlabel="steps", ylabel=r"$\|G - G'\|_2$", title=f"ICS, layer #{layer}", yscale="log")
    seed_band(axes[1][0], pair.metric("landscape/loss_min"), pair.metric("landscape/loss_max"), show_lr=False)
    axes[1][0].set(xlabel="steps", ylabel="loss landscape", yscale="log")
    seed_band(axes[1][1], pair.metric("landscape/gradpred_min"), pair.metric("landscape/gradpred_max"), show_lr=False)
    axes[1][1].set(xlabel="steps", ylabel="gradient predictiveness", yscale="log")
    seed_lines(axes[1][2], sub.metric("landscape/beta_smoothness"), show_lr=False)
    axes[1][2].set(xlabel="steps", ylabel=r"effective $\beta$-smoothness", yscale="log")
    every_lr = dln.select(variant=["dln_none", "dln_batch"])
    for j, layer in enumerate((9, 17)):
        seed_lines(axes[2][j], every_lr.metric(f"ics/layer{layer:02d}/cosine"))
        axes[2][j].set(xlabel="steps", ylabel=r"$\cos(G, G')$", title=f"ICS, layer #{layer}, every lr", ylim=(-1.05, 1.05))
    axes[2][2].set_axis_off()  # the cosine row's legend (it names the lr of each line)
    axes[2][2].legend(*axes[2][0].get_legend_handles_labels(), loc="center left")
    lrs = ", ".join(f"{x:g}" for x in sorted(set(every_lr.table.lr)))
    return finish(fig, axes[0][0], f"Deep linear network (rows 1-2: {note.split(';')[0]}, ICS and the landscape bands "
                                   f"with and without BN; row 3: cos(G, G') at lr {lrs})", max_columns=5)


FIGURES = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "fig8": fig8, "fig_lp": fig_lp, "fig_dln": fig_dln}
