"""One attribute of several objects set for the length of a ``with`` block, then put back: how the
measurements switch the noisy layers' stream or noise and the fused norms' backward."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable


@contextlib.contextmanager
def setting(objects: Iterable[object], name: str, value):
    """Each of ``objects`` has ``name`` = ``value`` inside; each one's own value is put back after."""
    objects = list(objects)
    before = [getattr(o, name) for o in objects]
    for o in objects:
        setattr(o, name, value)
    try:
        yield
    finally:
        for o, old in zip(objects, before):
            setattr(o, name, old)
