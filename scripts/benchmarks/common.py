"""What every benchmark shares: rounds that alternate the candidates, medians, and markdown tables.

This machine is noisy (other tenants, frequency scaling): a ratio is trustworthy only between
numbers measured side by side, so every benchmark times its candidates in alternating rounds inside
one process and prints each round beside the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def alternate(candidates: dict[str, Callable[[int], T]], rounds: int, warm_up: int = 0) -> dict[str, list[T]]:
    """Each candidate once per round, in turn: ``candidate(round)`` for rounds 0 .. warm_up + rounds
    - 1; the first ``warm_up`` rounds' results are dropped (compilation, allocator, autotuning)."""
    results: dict[str, list[T]] = {name: [] for name in candidates}
    for r in range(warm_up + rounds):
        for name, run in candidates.items():
            value = run(r)
            if r >= warm_up:
                results[name].append(value)
    return results


def median(values: Sequence[float | None]) -> float | None:
    """The median, or None where a round gave no number."""
    return statistics.median(values) if values and None not in values else None


def rounds(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """The rounds of one candidate, as a table cell."""
    return ", ".join(fmt.format(v) for v in values)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
