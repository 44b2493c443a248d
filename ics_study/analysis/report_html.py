"""``report.html``: the report as a page to look at. Self-contained: the figures are embedded as
PNG data (in 256 colours where that keeps them: a third of the bytes), the style is inline, nothing
is fetched; it opens from a file, reads on a laptop screen and prints cleanly. Claims first
(verdicts colour-coded, each linked to its figure), then the figures, the results per variant and
learning rate, the runs and the provenance notes."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from ..recording.storage import atomic_write

COLOURS = {"reproduced": "#1a7f37", "holds": "#1a7f37", "consistent": "#4d9f5a", "not reproduced": "#cf222e",
           "does not hold": "#cf222e", "inconsistent": "#d9534f",
           "inconclusive": "#9a6700", "not measured": "#6e7781", "not testable at this scale": "#6e7781"}
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.2em; color: #1f2328; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f6f8fa; } table.claims td:nth-child(2) { width: 20%; } table.claims td:nth-child(4) { width: 30%; }
table.claims td:nth-child(5) { width: 20%; } table.claims td:nth-child(6) { width: 11%; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { color: #fff; border-radius: 3px; padding: 0.1em 0.4em; white-space: nowrap; font-weight: 600; }
.scroll { overflow-x: auto; } .small { font-size: 0.85em; color: #57606a; }
figure { margin: 1em 0; page-break-inside: avoid; } figure img { max-width: 100%; height: auto; }
figcaption { font-weight: 600; }
@media print { body { max-width: none; font-size: 10pt; } a { color: inherit; text-decoration: none; }
  .scroll { overflow: visible; } tr, figure { page-break-inside: avoid; } h2 { page-break-after: avoid; } }
"""


def _verdict(v: str) -> str:
    """A colour-coded badge (the verdict's kind), the reason in parentheses beneath it."""
    kind = next((k for k in sorted(COLOURS, key=len, reverse=True) if v.startswith(k)), "not measured")
    badge, _, reason = v.partition(" (")
    extra = f"<br><span class='small'>({html.escape(reason)}</span>" if reason else ""
    return f'<span class="verdict" style="background:{COLOURS[kind]}">{html.escape(badge)}</span>{extra}'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'



FAITHFUL = 0.005  # [I] at most this fraction of a figure's pixels may move by over 16 levels (of 255) in any channel


def embedded_png(path: Path) -> bytes:
    """The figure at ``path`` as a 256-colour PNG where that keeps it: a figure of lines, text and a few
    fills quantises (median cut, no dithering) with every pixel near its colour, in a third of the bytes
    (the reference figures: 2.2 MB of PNGs in 0.75 MB; 0.002% to 0.18% of pixels off by over 16
    levels), so the page stays small enough to mail. A figure whose colours do not fit in 256 (a
    large full-colour image) is embedded as drawn. The PNG files beside the report keep every colour."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))  # a transparent pixel reads as the page's white
    quantised = flat.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    off = np.abs(np.asarray(flat, dtype=np.int16) - np.asarray(quantised.convert("RGB"), dtype=np.int16)).max(-1)
    if (off > 16).mean() > FAITHFUL:
        return path.read_bytes()
    buf = io.BytesIO()
    quantised.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _num(v, fmt="{:.3f}") -> str:
    return "-" if pd.isna(v) else fmt.format(v)


def write_html(path: Path, data) -> None:
    """report.html from a ``report.ReportData``, its figures read from beside ``path``."""
    res, cl, table, figures, notes = data.results, data.claims, data.runs, data.figures, data.notes
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>ics-study report</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body>",
             "<h1>ics-study report</h1>",
             f"<p class='small'>{len(table)} runs from {e(', '.join(data.folders))}</p>",
             ]
    for kind, anchor, title, intro in data.sections:
        rows = []
        for c in cl[cl.kind == kind].itertuples():
            fig = f"<a href='#{c.figure}'>{e(c.figure)}</a>" if c.figure in figures else e(c.figure)
            ordering = f"<br><span class='small'>{e(c.ordering)}</span>" if c.ordering else ""
            rows.append([fig, f"{e(c.claim)} <span class='small'>(lr {c.lr:g})</span>", e(c.paper),
                         f"{e(c.evidence)}<br><span class='small'>{e(c.statistic)}</span>",
                         f"<span class='small'>{e(c.rule)}</span>", _verdict(c.verdict) + ordering])
        if rows:
            parts.append(f"<h2 id='{anchor}'>{title}</h2>" + (f"<p class='small'>{intro}</p>" if intro else ""))
            parts.append(_table(["figure", "claim", "paper", "measured (mean ± std, n, range)", "rule", "verdict"], rows,
                                "claims"))
            if kind == "extension" and data.beyond:
                parts.append("<p>" + e(data.beyond).replace("**", "") + "</p>")
    if figures:
        parts.append("<h2 id='figures'>Figures</h2>")
        for f in figures:
            png = base64.b64encode(embedded_png(path.parent / f"{f}.png")).decode()
            parts.append(f"<figure id='{f}'><figcaption>{f}</figcaption><img alt='{f}' src='data:image/png;base64,{png}'></figure>")
    parts.append("<h2 id='results'>Results per variant and learning rate</h2>")
    parts.append(_table(["variant", "lr", "seeds", "final train acc", "train-curve area", "test acc (last 3)",
                         "test acc: as trained", "recalibrated BN", "noise on", "steps to 50% / 80% / 90% / 99%", "diverged"],
                        [[e(r.variant), f"{r.lr:g}", str(r.seeds)] + [
                            f"{_num(getattr(r, k + '_mean'))} ± {_num(getattr(r, k + '_std'))}" if not pd.isna(getattr(r, k + "_mean")) else "-"
                            for k in ("train_acc", "auc", "test_acc_last3", "test_acc", "test_acc_recalibrated", "test_acc_noise_on")]
                         + [" / ".join(_num(getattr(r, f"steps_to_{t}"), "{:.0f}") for t in (50, 80, 90, 99)), str(r.diverged)]
                         for r in res.itertuples()]))
    parts.append("<h2 id='wall-time'>Wall time per preset</h2>")
    parts.append(_table(["sweep", "variant", "device", "runs", "median per run", "fastest run", "all runs"],
                        [[e(w.sweep), e(str(w.variant)), e(w.device), str(w.runs)]
                         + [_num(v, "{:.1f} min") for v in (w.median_min, w.fastest_min, w.total_min)]
                         for w in data.wall.itertuples()]))
    parts.append("<h2 id='runs'>Runs</h2>")
    wall = table["summary/wall_time_s"] if "summary/wall_time_s" in table else pd.Series(index=table.index, dtype=float)
    parts.append(_table(["run", "variant", "lr", "seed", "status", "steps", "wall time", "device"],
                        [[e(Path(r.path).name), e(str(r.variant)), f"{r.lr:g}", str(r.seed), e(str(r.status)),
                          _num(r.steps, "{:.0f}"), _num(w, "{:.0f} s"),
                          e(str(getattr(r, "hardware", None) or getattr(r, "device", "-")))]
                         for r, w in zip(table.itertuples(), wall)]))
    if notes:
        import markdown

        parts.append("<div id='provenance'>" + markdown.markdown(notes, extensions=["tables"]) + "</div>")
    parts.append("</body></html>")
    text = "\n".join(parts)
    atomic_write(path, lambda tmp: tmp.write_text(text))
