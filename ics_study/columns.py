"""Columns of the tables, built as Arrow arrays where they are made (probes, the recorder), so that
no row ever passes through Python one value at a time. Depends on nothing of ics_study."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def labels(vocabulary, codes) -> pa.DictionaryArray:
    """A string column stored as small integer codes into ``vocabulary`` (fast to build, small on disk)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(vocabulary)))
