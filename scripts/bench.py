"""The benchmarks, one entry point: ``python scripts/bench.py [NAME] [ARGS]`` (``make bench`` runs ``loop``).

    loop         ics-study's training loop against the loop a typical user writes (the main one)
    probes       what the activation probes and the paper's measurements cost, on and off side by side
    noise        what the noisy BN's injected noise costs per step, with each source of random numbers
    variants     every network side by side: its training step and a whole short run against BN's
    host         the whole loop's host time per step around a free CUDA-graph replay
    host-probes  the probes' host work alone (flushes, tables, events): what a GPU may wait for
    profile      torch.profiler over the steady steps of one run: where the time goes
    jobs         one run on every core against N runs side by side (reproduce.sh's JOBS)

``python scripts/bench.py NAME --help`` gives each one's options. Every benchmark alternates what it
compares inside one process run (``benchmarks/common.py``; quote ratios measured side by side), and
``--json FILE`` (loop, probes) writes what ``scripts/targets.py`` judges. The numbers measured so
far, with their hardware and commands: docs/performance.md.
"""

from __future__ import annotations

import importlib
import sys

# name -> module of the benchmarks package beside this file (python puts this file's folder on the path)
BENCHMARKS = {"loop": "loop", "probes": "probes", "noise": "noise", "variants": "variants", "host": "host_loop",
              "host-probes": "host_probes", "profile": "torch_profile", "jobs": "jobs"}


def main(argv: list[str]) -> None:
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__)
        return
    name, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("loop", argv)
    if name not in BENCHMARKS:
        print(f"bench.py: error: unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(f"benchmarks.{BENCHMARKS[name]}").main(rest, prog=f"bench.py {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
