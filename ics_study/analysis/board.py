"""TensorBoard on a results folder: the one place that knows the flags it needs.

    ics-study board results/            # starts TensorBoard with FLAGS, prints the address

TensorBoard down-samples by default (early histogram steps vanish); ``--samples_per_plugin`` with
large numbers keeps every point. Do NOT pass ``scalars=0``: with tensorboard 2.21 it serves no
scalar points at all (every scalar and custom-scalar chart is empty; ``tests/unit/analysis/test_board.py``).
"""

from __future__ import annotations

import shlex

SAMPLES = "scalars=1000000,histograms=100000"  # keep every point (read by the README test)
FLAGS = ("--samples_per_plugin", SAMPLES)


def command(logdir: str) -> str:
    """The shell command that shows ``logdir`` in TensorBoard with every point."""
    return shlex.join(["tensorboard", "--logdir", str(logdir), *FLAGS])


def main(argv: list[str]) -> int:
    """``ics-study board PATH [--port N] [--host H]``: TensorBoard on PATH with every point kept."""
    import argparse
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from ..errors import UserError

    ap = argparse.ArgumentParser(prog="ics-study board", description="TensorBoard on a results folder, every point kept")
    ap.add_argument("path", nargs="?", default="results", help="a run, sweep or results folder (default results)")
    ap.add_argument("--port", type=int, default=6006)
    ap.add_argument("--host", default="localhost")
    args = ap.parse_args(argv)
    if not Path(args.path).exists():
        raise UserError(f"{args.path} does not exist; give a run, sweep or results folder")
    exe = shutil.which("tensorboard") or str(Path(sys.executable).parent / "tensorboard")
    if not os.path.exists(exe):
        raise UserError("tensorboard is not installed in this environment (pip install tensorboard)")
    print(f"TensorBoard on {args.path}: http://{args.host}:{args.port}/  (Ctrl-C stops it)\n"
          f"  same as: {command(args.path)} --host {args.host} --port {args.port}", file=sys.stderr)
    try:
        return subprocess.call([exe, "--logdir", str(args.path), *FLAGS, "--host", args.host, "--port", str(args.port)])
    except KeyboardInterrupt:
        return 0
