"""How results reach the disk: atomically, and as tidy tables that pandas reads in one call.

A table is a folder of Parquet part files (``metrics/part-000001.parquet``, ...), one per flush.
``pandas.read_parquet(run_dir / "metrics")`` reads the whole folder. Every file is written to a
hidden temporary name, fsynced and renamed, so a crash never leaves a half-written file that a
reader would pick up (pyarrow skips names starting with '.').
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


class TableWriter:
    """Buffers rows column by column and writes one Parquet part per ``flush()``."""

    def __init__(self, folder: Path, schema: pa.Schema | None = None):
        self.folder, self.schema = Path(folder), schema  # None: taken from the first append
        self.folder.mkdir(parents=True, exist_ok=True)
        self.parts = len(list(self.folder.glob("part-*.parquet")))
        self._chunks: list[pa.Table] = []

    def append(self, **columns) -> None:
        chunk = pa.table(columns, schema=self.schema)
        self.schema = chunk.schema
        self._chunks.append(chunk)

    def flush(self) -> None:
        if not self._chunks:
            return
        table = pa.concat_tables(self._chunks)
        self._chunks = []
        self.parts += 1
        path = self.folder / f"part-{self.parts:06d}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
