"""One look for every figure: a colour and a label per variant, column-width sizes, vector output."""

from __future__ import annotations

import logging
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402

# Subsetting a bundled font for a PDF, fontTools warns that its 'created' stamp "seems very low": a
# property of the font file, not of our figures, printed once per PDF.
logging.getLogger("fontTools.ttLib.tables._h_e_a_d").setLevel(logging.ERROR)

COLORS = {
    "vgg": "#1f77b4", "vgg_bn": "#d62728", "vgg_bn_noise": "#2ca02c", "vgg_noise": "#ff7f0e",
    "vgg_lp1": "#9467bd", "vgg_lp2": "#8c564b", "vgg_lpinf": "#e377c2",
    "dln_none": "#1f77b4", "dln_batch": "#d62728", "dln_lp1": "#9467bd", "dln_lp2": "#8c564b", "dln_lpinf": "#e377c2",
    "vgg_ln": "#17becf", "vgg_gn": "#bcbd22", "vgg_ws_gn": "#7f7f00", "vgg_bn_center": "#ff9896",
    "vgg_bn_scale": "#c49c94", "vgg_bn_running": "#8b0000",
}
LABELS = {
    "vgg": "Standard", "vgg_bn": "Standard + BatchNorm", "vgg_bn_noise": 'Standard + "Noisy" BatchNorm',
    "vgg_noise": "Standard + noise, no BatchNorm",
    "vgg_lp1": "Standard + L1", "vgg_lp2": "Standard + L2", "vgg_lpinf": r"Standard + L$\infty$",
    "dln_none": "DLN", "dln_batch": "DLN + BatchNorm", "dln_lp1": "DLN + L1", "dln_lp2": "DLN + L2",
    "dln_lpinf": r"DLN + L$\infty$",
    "vgg_ln": "LayerNorm", "vgg_gn": "GroupNorm", "vgg_ws_gn": "WS + GroupNorm", "vgg_bn_center": "BN, centring only",
    "vgg_bn_scale": "BN, scaling only", "vgg_bn_running": "BN, running statistics",
}
LR_STYLES = ["-", "--", ":", "-."]
COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
RC = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "legend.fontsize": 6, "xtick.labelsize": 6,
    "ytick.labelsize": 6, "lines.linewidth": 1.0, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "savefig.bbox": "tight", "savefig.dpi": 200, "legend.frameon": False,
    "svg.hashsalt": "ics-study",  # fixed SVG element ids: same runs, same file
}


def color(variant: str) -> str:
    return COLORS.get(variant, "#7f7f7f")


def label(variant: str) -> str:
    return LABELS.get(variant, variant)


def figure(rows: int, cols: int, width: float = 2 * COLUMN_WIDTH, height_per_row: float = 1.6):
    """A figure two columns wide (call inside ``plt.rc_context(RC)``, as ``make_figures`` does)."""
    return plt.subplots(rows, cols, figsize=(width, height_per_row * rows), squeeze=False, layout="constrained")


def figure_over(top: int, rows: int, cols: int, height_per_row: float = 1.6):
    """A figure of ``top`` equal-width panels over a ``rows`` x ``cols`` grid (the top panels first in
    ``fig.axes``): ``fig, top_axes, grid_axes``."""
    fig = plt.figure(figsize=(2 * COLUMN_WIDTH, height_per_row * (rows + 1)), layout="constrained")
    outer = fig.add_gridspec(rows + 1, 1)
    above = outer[0].subgridspec(1, top)
    top_axes = [fig.add_subplot(above[0, j]) for j in range(top)]
    below = outer[1:].subgridspec(rows, cols)
    return fig, top_axes, [[fig.add_subplot(below[i, j]) for j in range(cols)] for i in range(rows)]


def finish(fig, legend_from, title: str, max_columns: int | None = None):
    """``fig`` with ``legend_from``'s legend under all the panels, in one row (or ``max_columns``;
    inside a panel it hid curves or bands), and its wrapped title."""
    handles, labels = legend_from.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), max_columns or len(labels)) or 1)
    suptitle(fig, title)
    return fig


def suptitle(fig, text: str) -> None:
    """The figure's title, wrapped to the figure's width (a one-line title wider than the figure is
    clipped at both sides by the tight bounding box)."""
    size = matplotlib.font_manager.FontProperties(size=plt.rcParams["figure.titlesize"]).get_size_in_points()
    chars = int(fig.get_figwidth() * 72 / (0.6 * size))  # 0.6 em: a generous mean glyph width
    lines = -(-len(text) // chars)
    fig.suptitle(textwrap.fill(text, width=-(-len(text) // lines) + 8))  # lines of about equal length
