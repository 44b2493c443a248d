"""``ics-study figures PATH... [--out DIR] [--format png,pdf] [--only fig1,fig2]``

Reads the tidy tables of finished runs (any mix of run and sweep dirs), groups runs by variant and
learning rate, aggregates seeds (mean line, min-max band; single runs drawn plain) and writes the
paper's figures and those beyond it (``extensions.py``). A figure whose runs are missing is skipped with one line naming what it needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ...errors import UserError
from ..runs import find_runs
from . import extensions, paper
from .paper import MissingRuns
from .style import RC

FIGURES = {**paper.FIGURES, **extensions.FIGURES}  # the paper's, then those beyond it

_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}  # matplotlib stamps these with the time


def make_figures(paths, out: Path, formats=("png", "pdf"), only=None, log=print, strict=True) -> dict[str, list[Path]]:
    """Write each figure whose runs exist; ``strict=False`` (the report's use) also skips, with one
    line, a figure that fails for another reason, so that the report is written all the same."""
    import matplotlib.pyplot as plt

    runs = find_runs(paths)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for name, build in FIGURES.items():
        if only and name not in only:
            continue
        with plt.rc_context(RC):
            try:
                fig = build(runs)
            except MissingRuns as e:
                log(f"skipped {name}: {e}")
                continue
            except FileNotFoundError as e:  # runs known from an aggregate table whose own tables are gone
                plt.close("all")
                log(f"skipped {name}: a table it draws from is missing ({e})")
                continue
            except Exception as e:
                if strict:
                    raise
                plt.close("all")
                log(f"skipped {name}: could not draw it ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
                continue
            written[name] = []
            for fmt in formats:
                path = out / f"{name}.{fmt}"
                fig.savefig(path, metadata=_NO_DATE.get(fmt))  # same runs, same bytes
                written[name].append(path)
            plt.close(fig)
        log(f"wrote {name}: {', '.join(str(p) for p in written[name])}")
    return written


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ics-study figures", description=__doc__.split("\n\n")[1])
    ap.add_argument("paths", nargs="+", help="run dirs and/or sweep dirs")
    ap.add_argument("--out", default="results/figures", help="output folder (default results/figures)")
    ap.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(FIGURES)}")
    args = ap.parse_args(argv)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    if bad:
        raise UserError(f"--format {','.join(bad)} is not supported; use png, pdf or svg")
    only = args.only.split(",") if args.only else None
    if only and set(only) - set(FIGURES):
        raise UserError(f"--only: unknown figure(s) {sorted(set(only) - set(FIGURES))}; choose from {', '.join(FIGURES)}")
    made = make_figures(args.paths, Path(args.out), formats, only, log=lambda m: print(m, file=sys.stderr))
    return 0 if made else 1


__all__ = ["FIGURES", "make_figures", "main"]
