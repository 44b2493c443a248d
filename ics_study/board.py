"""TensorBoard on a results folder: the one place that knows the flags it needs.

    ics-study board results/            # starts TensorBoard with FLAGS, prints the address

TensorBoard down-samples by default (early histogram steps vanish); ``--samples_per_plugin`` with
large numbers keeps every point. Do NOT pass ``scalars=0``: with tensorboard 2.21 it serves no
scalar points at all (every scalar and custom-scalar chart is empty; ``tests/test_board.py``).
"""

from __future__ import annotations

import shlex

SAMPLES = "scalars=1000000,histograms=100000"  # keep every point (read by the README test)
FLAGS = ("--samples_per_plugin", SAMPLES)


def command(logdir: str) -> str:
    """The shell command that shows ``logdir`` in TensorBoard with every point."""
    return shlex.join(["tensorboard", "--logdir", str(logdir), *FLAGS])
