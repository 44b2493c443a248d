#!/usr/bin/env python
"""The performance issue's targets against what a check measured: one table.

    python scripts/targets.py OUT_DIR          # OUT_DIR of scripts/gpu_check.sh (or any folder)

Reads whichever of these OUT_DIR holds (a target without its file is "not measured"):
  bench.json         scripts/bench.py loop --json: the loop against the reference (first row)
  bench_probes.json  scripts/bench.py probes --json: probes on/off
  fig2.json          gpu_check.sh's fig2 part: the full protocol's training time

Targets (the issue): the loop at least 3x the reference on one GPU, 1.5x on the CPU; the full fig2
protocol (3 networks x 15,000 steps) in under 3 minutes of training on one GPU; the probes at most
5% at defaults. Verdicts are strict: the loop's ratio is over whole runs (the steady ratio, which
a 15,000-step run approaches, is shown beside it); the probes' cost is the one projected to a
paper-length run from the measured one-off and steady times (the steady cost beside it); fig2
counts only if all three runs finished.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LOOP_TARGET = {"cuda": 3.0, "cpu": 1.5}  # x the reference loop's images/s
FIG2_TARGET_S = 180.0  # training time of the three runs, one GPU
FIG2_RUNS = 3
PROBE_TARGET = 0.05  # slowdown at defaults


NOT_JUDGED = "- (the targets are for VGG-16 at width 1)"


def _full_size(measured: dict) -> bool:
    """The targets speak of VGG-16 at its full width; a narrower benchmark (``--quick``) is not judged."""
    return measured.get("width") == 1.0


def _read(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def loop_row(bench: dict | None) -> list[str]:
    if bench is None or len(bench["rows"]) < 2 or bench["rows"][0]["variant"] != "ref":
        return ["loop vs the reference", "not measured (bench.py --json with ref first)", "-"]
    kind = "cuda" if bench["device"].startswith("cuda") else "cpu"
    target = LOOP_TARGET[kind]
    ref = bench["rows"][0]
    ratios = []
    for row in bench["rows"][1:]:
        whole = row["images_per_s"] / ref["images_per_s"]
        steady = (row["steady_images_per_s"] / ref["steady_images_per_s"]
                  if row["steady_images_per_s"] and ref["steady_images_per_s"] else None)
        ratios.append((whole, steady, row["variant"]))
    best = max(ratios)
    measured = "; ".join(f"{v} {w:.2f}x" + (f" ({s:.2f}x steady)" if s else "") for w, s, v in ratios)
    verdict = f"{_verdict(best[0] >= target)} ({best[2]})" if _full_size(bench) else NOT_JUDGED
    return [f"loop at least {target:g}x the reference ({bench['device_name']})",
            f"{measured} [{bench['model']} width {bench['width']:g}]", verdict]


def fig2_row(fig2: dict | None) -> list[str]:
    if fig2 is None:
        return ["fig2 (3 x 15,000 steps) in under 3 min of training, one GPU", "not measured", "-"]
    done = [j for j in fig2["jobs"] if j["status"] == "completed"]
    measured = f"{fig2['training_s']:.0f} s ({fig2['training_s'] / 60:.2f} min), {len(done)} of {FIG2_RUNS} runs finished"
    return ["fig2 (3 x 15,000 steps) in under 3 min of training, one GPU", measured,
            _verdict(len(done) == FIG2_RUNS and fig2["training_s"] < FIG2_TARGET_S)]


def probes_row(probes: dict | None) -> list[str]:
    on = next((r for r in (probes or {}).get("rows", []) if r["setting"] == "probes on"), None)
    if on is None:
        return ["probes at most 5% at defaults", "not measured", "-"]
    measured = (f"{100 * on['slowdown_at_paper_steps']:.1f}% projected to {probes['paper_steps']:,} steps; "
                f"{100 * on['steady_slowdown']:.1f}% steady, {100 * on['slowdown']:.1f}% over "
                f"{probes['steps']}-step runs ({probes['device']})")
    measured += f" [{probes['model']} width {probes['width']:g}]"
    verdict = _verdict(on["slowdown_at_paper_steps"] <= PROBE_TARGET) if _full_size(probes) else NOT_JUDGED
    return ["probes at most 5% at defaults", measured, verdict]


def table(folder: Path) -> str:
    rows = [loop_row(_read(folder, "bench.json")), fig2_row(_read(folder, "fig2.json")),
            probes_row(_read(folder, "bench_probes.json"))]
    return "\n".join(["| target | measured | verdict |", "|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows)])


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: targets.py OUT_DIR (a folder holding bench.json, bench_probes.json and/or fig2.json)")
    print(table(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
