"""Reading a run's small JSON records -- ``summary.json`` and ``status.json`` -- for ``sweep``,
``aggregate`` and ``report``, which must go on with the other runs when one file is broken.

Both files are written atomically, so a half-written one means damage (a disk fault, a hand edit,
a copy gone wrong), not a run in progress. A broken file is named in one warning line and read as
absent: the run then counts as unfinished (summary) or of unknown state (status), and every other
run is read as usual. A missing file is normal (a pending or running job) and says nothing.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger("ics_study")

STATUSES = {"running", "completed", "diverged", "interrupted", "failed"}
_warned: set[str] = set()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _summary_fault(d: dict) -> str | None:
    if d.get("status") not in STATUSES - {"running", "failed"}:
        return f"'status' is {d.get('status')!r}, not one of completed, diverged, interrupted"
    if not _count(d.get("steps")):
        return f"'steps' is {d.get('steps')!r}, not a count"
    final = d.get("final")
    if not isinstance(final, dict) or not all(isinstance(k, str) and (v is None or _number(v)) for k, v in final.items()):
        return "'final' is not a table of numbers"
    for key in ("max_steps", "diverged_at", "resumed_from"):
        if d.get(key) is not None and not _count(d[key]):
            return f"'{key}' is {d[key]!r}, not a count"
    for key in ("wall_time_s", "eval_time_s", "checkpoint_time_s", "train_images_per_s", "steady_images_per_s",
                "peak_memory_gb", "lr"):
        if d.get(key) is not None and not (_number(d[key]) and math.isfinite(d[key])):
            return f"'{key}' is {d[key]!r}, not a number"
    if d.get("device") is not None and not isinstance(d["device"], str):
        return f"'device' is {d['device']!r}, not a name"
    return None


def _status_fault(d: dict) -> str | None:
    if d.get("status") not in STATUSES:
        return f"'status' is {d.get('status')!r}, not one of {', '.join(sorted(STATUSES))}"
    if d.get("steps") is not None and not _count(d["steps"]):
        return f"'steps' is {d['steps']!r}, not a count"
    if d.get("error") is not None and not isinstance(d["error"], str):
        return "'error' is not text"
    return None


def _read(path: Path, fault) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        return _broken(path, f"unreadable ({getattr(e, 'strerror', None) or type(e).__name__})")
    try:
        d = json.loads(text)
    except ValueError as e:
        return _broken(path, f"not valid JSON ({e.msg} at line {e.lineno})")
    if not isinstance(d, dict):
        return _broken(path, f"holds a {type(d).__name__}, not a record")
    why = fault(d)
    return _broken(path, why) if why else d


def _broken(path: Path, why: str) -> dict:
    if str(path) not in _warned:  # one line per file and process, however often it is read
        _warned.add(str(path))
        log.warning("ics-study: warning: ignoring %s: %s; the other runs go on (rerun that run, or delete the file)",
                    path, why)
    return {}


def read_summary(run: Path) -> dict:
    """``run/summary.json``, or {} if it is missing or broken (broken: named once on stderr)."""
    return _read(Path(run) / "summary.json", _summary_fault)


def read_status(run: Path) -> dict:
    """``run/status.json``, or {} if it is missing or broken (broken: named once on stderr)."""
    return _read(Path(run) / "status.json", _status_fault)
