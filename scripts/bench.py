"""The benchmarks, one entry point: ``python scripts/bench.py [NAME] [ARGS]`` (``make bench`` runs ``loop``).

    loop         ics-study's training loop against the loop a typical user writes (the main one)
    probes       what the activation probes and the paper's measurements cost, on and off side by side
    noise        what the noisy BN's injected noise costs per step, now and in its first form
    variants     every network side by side: its training step and a whole short run against BN's
    host         the whole loop's host time per step around a free CUDA-graph replay
    host-probes  the probes' host work alone (flushes, tables, events): what a GPU may wait for
    profile      torch.profiler over the steady steps of one run: where the time goes

``python scripts/bench.py NAME --help`` gives each one's options. Every benchmark alternates what it
compares inside one process run (this machine is noisy: quote ratios measured side by side), and
``--json FILE`` (loop, probes) writes what ``scripts/targets.py`` judges. The numbers measured so
far, with their hardware and commands: docs/performance.md.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "benchmarks"
BENCHMARKS = {"loop": "loop.py", "probes": "probes.py", "noise": "noise.py", "variants": "variants.py", "host": "host_loop.py",
              "host-probes": "host_probes.py", "profile": "torch_profile.py"}


def main(argv: list[str]) -> None:
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(__doc__)
        return
    name, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("loop", argv)
    if name not in BENCHMARKS:
        print(f"bench.py: error: unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        sys.exit(2)
    script = HERE / BENCHMARKS[name]
    sys.argv = [f"bench.py {name}", *rest]
    sys.path.insert(0, str(HERE))  # the benchmarks import each other (probes uses loop's helpers)
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
