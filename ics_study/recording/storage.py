"""How results reach the disk: atomically, and as tidy tables that pandas reads in one call.

A table is a folder of Parquet part files (``metrics/part-000001.parquet``, ...).
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

from ..errors import WriteFailed


def atomic_write(path: Path, write, fsync: bool = True) -> None:
    """Call ``write(tmp_path)``, fsync the result (unless told not to), then rename it to ``path``.

    The rename alone makes the file appear whole or not at all if the process dies; the fsync also
    covers a machine crash, at a cost (tens of ms on some disks) paid only where it matters."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk, an I/O error: no temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise WriteFailed(path, e) from e


def read_json(path: Path) -> dict:
    """A JSON file's contents, or {} if it is missing or half-written (a job still running)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"))


class TableWriter:
    """Buffers rows column by column and writes one Parquet part per ``flush()``.

    ``flush(force=False)`` writes only once ``rows_per_part`` rows are waiting, so a run writes a
    few large parts rather than many small ones; ``flush(force=True)`` writes whatever is waiting."""

    rows_per_part = 250_000

    def __init__(self, folder: Path, schema: pa.Schema | None = None):
        self.folder, self.schema = Path(folder), schema  # None: taken from the first append
        self.folder.mkdir(parents=True, exist_ok=True)
        self.parts = len(list(self.folder.glob("part-*.parquet")))
        self._chunks: list[pa.Table] = []
        self._rows = 0

    def append(self, **columns) -> None:
        chunk = pa.table(columns, schema=self.schema)
        self.schema = chunk.schema
        self._chunks.append(chunk)
        self._rows += chunk.num_rows

    def flush(self, force: bool = True) -> None:
        if not self._chunks or (not force and self._rows < self.rows_per_part):
            return
        table = pa.concat_tables(self._chunks)
        self._chunks, self._rows = [], 0
        path = self.folder / f"part-{self.parts + 1:06d}.parquet"
        # float columns: byte-stream-split encoding, not dictionaries (a third smaller for activations)
        floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
        others = [f.name for f in table.schema if f.name not in floats]
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", use_dictionary=others,
                                                      use_byte_stream_split=floats), fsync=False)
        self.parts += 1  # only once the part is whole on disk
