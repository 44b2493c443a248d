"""``ics-study train ARGS`` with one fault armed, for the fault matrix (tests/reliability/test_fault_matrix.py).

    python -m tests.helpers.fault_child [--fault MOMENT:N] [--job K] [--graph] -- ARGS

The fault kills this process with SIGKILL -- no handler runs, nothing is flushed -- at the N-th
time (counted from 1 in this process) that the run reaches MOMENT:

    table_write       a table part half written to its temporary file
    checkpoint_write  checkpoint.pt half written to its temporary file
    between_steps     step N queued, before its flush, evaluation or checkpoint
    evaluation        the N-th evaluation computed, not yet recorded
    graph_capture     the N-th CUDA-graph recording, after its warm-up steps (CPU stand-in)

``--job K`` arms the fault only in job K of a multirun (Hydra's job number). ``--graph`` trains
through the CPU stand-in of the CUDA graph (tests/unit/train/test_cuda_graph.py: ReplayByRerun), which trains
exactly like the eager loop. The code under test is not changed: every fault is a wrapper around
the real function, installed here, in the child only.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from pathlib import Path

MOMENTS = ("table_write", "checkpoint_write", "between_steps", "evaluation", "graph_capture")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def half_write(tmp: Path) -> None:
    """Leave ``tmp`` as a process killed mid-write would: its first half only."""
    data = Path(tmp).read_bytes()
    Path(tmp).write_bytes(data[: len(data) // 2])


class Trigger:
    """True at the N-th call in the armed job (always False when disarmed)."""

    def __init__(self, n: int, job: int | None):
        self.n, self.job, self.calls = n, job, 0

    def __call__(self) -> bool:
        if self.job is not None:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.get().job.num != self.job:
                return False
        self.calls += 1
        return self.calls == self.n


def arm(moment: str, fire: Trigger) -> None:
    import pyarrow.parquet as pq

    import ics_study.train as train_package
    import ics_study.train.checkpoint as checkpoint
    import ics_study.train.run as run_module

    if moment == "table_write":
        real_write_table = pq.write_table

        def write_table(table, where, *args, **kwargs):
            real_write_table(table, where, *args, **kwargs)
            if fire():
                half_write(where)
                die()

        pq.write_table = write_table
    elif moment == "checkpoint_write":
        real_atomic_write = checkpoint.atomic_write

        def atomic_write(path, write, *args, **kwargs):
            def faulty(tmp):
                write(tmp)
                if fire():
                    half_write(tmp)
                    die()

            real_atomic_write(path, faulty, *args, **kwargs)

        checkpoint.atomic_write = atomic_write
    elif moment == "between_steps":
        real_train = train_package.train  # what the CLI calls

        def on_step(step: int) -> None:
            if fire():
                die()

        train_package.train = functools.partial(real_train, on_step=on_step)
    elif moment == "evaluation":
        real_evaluate = run_module.evaluate

        def evaluate(*args, **kwargs):
            result = real_evaluate(*args, **kwargs)
            if fire():
                die()
            return result

        run_module.evaluate = evaluate
    elif moment == "graph_capture":
        from tests.helpers.graph import ReplayByRerun

        real_record = ReplayByRerun._record

        def record(self, full):
            if fire():
                die()
            return real_record(self, full)

        ReplayByRerun._record = record
    else:
        raise SystemExit(f"unknown moment {moment!r}; one of {', '.join(MOMENTS)}")


def main(argv: list[str]) -> None:
    # everything after "--" goes to ics-study untouched (argparse would take its "-m" for an option)
    ours, args = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.fault_child")
    parser.add_argument("--fault", help="MOMENT:N")
    parser.add_argument("--job", type=int)
    parser.add_argument("--graph", action="store_true")
    opts = parser.parse_args(ours)
    if opts.fault:
        moment, n = opts.fault.split(":")
        arm(moment, Trigger(int(n), opts.job))
    from ics_study.cli import run_train
    from tests.helpers.graph import ReplayByRerun

    # --graph: the loop around CUDA-graph replays, with test_cuda_graph's CPU stand-in for the graph
    sys.exit(run_train(args, graphed_step=ReplayByRerun if opts.graph else None))


if __name__ == "__main__":
    main(sys.argv[1:])
