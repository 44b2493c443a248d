"""The recorder: writes what training and the probes return, to TensorBoard and to tidy tables.

It knows nothing of models or measurements. Callers hand it arrays; it writes

- ``metrics/``       (step, metric, value): one row per step and metric, e.g. ``train/loss``
- any other named table (``activations/``, ``histograms/``, ...) with the columns it is given
- TensorBoard events in the run dir (scalars, raw histograms, hparams, custom-scalar layouts)
- ``summary.json`` and ``status.json``, atomically.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from ..columns import labels
from ..config import LoggerConfig
from ..errors import WriteFailed
from . import event_crc
from .storage import TableWriter, atomic_write, write_json


class Recorder:
    def __init__(self, run_dir: Path, cfg: LoggerConfig, resume: tuple[int, dict[str, int]] | None = None):
        """``resume=(step, positions)`` continues a run: table parts written after the checkpoint's
        ``positions`` are deleted and TensorBoard events after ``step`` are purged."""
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.tables: dict[str, TableWriter] = {}
        if cfg.tables:
            import pandas  # noqa: F401  Arrow imports it at its first table: here, not in the first timed flush (~0.5 s)
        # a resume drops what was written after its checkpoint; a fresh start drops what a failed
        # attempt without any checkpoint left (a full disk before the first one): nothing is counted twice
        self._truncate(resume[1] if resume is not None else {})
        self.tb = None
        if cfg.tensorboard:
            from tensorboard.compat.proto import summary_pb2
            from torch.utils.tensorboard import SummaryWriter

            self._proto = summary_pb2  # Summary, HistogramProto: events written directly, many values each
            event_crc.install()  # TensorBoard's per-byte Python CRC was most of the probes' host time
            earlier = any(self.run_dir.glob("events.out.tfevents.*"))
            purge = resume[0] + 1 if resume is not None else (1 if earlier else None)
            # a deep queue: with the default 10, each flush waited on the writer thread event by event
            self.tb = SummaryWriter(log_dir=str(self.run_dir), max_queue=10_000, flush_secs=30, purge_step=purge)

    @contextlib.contextmanager
    def _tb_io(self):
        """TensorBoard's writer raises a bare OSError (from its own thread) when the disk is full."""
        try:
            yield
        except OSError as e:
            raise WriteFailed(f"{self.run_dir}/events.out.tfevents.* (TensorBoard)", e) from e

    def positions(self) -> dict[str, int]:
        """Parts written per table (call after ``flush(force=True)``): what a checkpoint records."""
        return {name: w.parts for name, w in self.tables.items()}

    def _truncate(self, positions: dict[str, int]) -> None:
        for part in self.run_dir.glob("*/part-*.parquet"):
            if int(part.stem.split("-")[1]) > positions.get(part.parent.name, 0):
                part.unlink()

    # --- scalars -------------------------------------------------------------------------------
    def scalars(self, steps, values: dict[str, np.ndarray]) -> None:
        """One value per step for each named metric: a ``metrics`` row and a TensorBoard point each."""
        steps = np.asarray(steps, dtype=np.int64)
        for name, vals in values.items():
            vals = np.asarray(vals, dtype=np.float64)
            self.table("metrics", step=steps, metric=labels([name], np.zeros(len(steps))), value=vals)
        self.tb_scalars(steps, values)

    def tb_scalars(self, steps, values: dict[str, np.ndarray]) -> None:
        """TensorBoard points only (for series whose table is written elsewhere): one event per step
        holding every named value (what ``add_scalar`` writes, at a sixth of its host time)."""
        if self.tb is None or not values:
            return
        names = list(values)
        rows = np.stack([np.asarray(values[n], dtype=np.float64) for n in names], 1).tolist()
        for step, row in zip(np.asarray(steps, dtype=np.int64).tolist(), rows):
            self._tb_event(step, [self._proto.Summary.Value(tag=n, simple_value=v) for n, v in zip(names, row)])

    def _tb_event(self, step: int, values: list) -> None:
        # SummaryWriter has no public call for a multi-value summary; its file writer takes one
        with self._tb_io():
            self.tb._get_file_writer().add_summary(self._proto.Summary(value=values), step)

    def table(self, name: str, **columns) -> None:
        if not self.cfg.tables:
            return
        if name not in self.tables:
            self.tables[name] = TableWriter(self.run_dir / name)
        self.tables[name].append(**columns)

    # --- TensorBoard only ----------------------------------------------------------------------
    def histograms(self, step: int, tags: list[str], edges: np.ndarray, counts: np.ndarray) -> None:
        """Histograms already binned on the device, one per tag, as one event: ``counts[j, i]`` values
        of ``tags[j]`` in ``[edges[j, i], edges[j, i+1])`` (each row its own edges). Sum and sum of
        squares use the bin centres."""
        if self.tb is None:
            return
        counts, edges = np.asarray(counts, dtype=np.float64), np.asarray(edges, dtype=np.float64)
        centres = 0.5 * (edges[:, :-1] + edges[:, 1:])
        total, sums, squares = counts.sum(1).tolist(), (counts * centres).sum(1).tolist(), (counts * centres**2).sum(1).tolist()
        filled = counts > 0
        first, last = filled.argmax(1).tolist(), (counts.shape[1] - 1 - filled[:, ::-1].argmax(1)).tolist()
        # empty end bins carry nothing: leaving them out is exact
        values = [self._proto.Summary.Value(tag=tag, histo=self._proto.HistogramProto(
            min=edges[j, a], max=edges[j, b + 1], num=n, sum=s, sum_squares=q, bucket_limit=edges[j, a + 1 : b + 2].tolist(),
            bucket=counts[j, a : b + 1].tolist())) for j, (tag, a, b, n, s, q) in enumerate(zip(tags, first, last, total, sums, squares))
            if n > 0]
        if values:
            self._tb_event(step, values)

    def layout(self, layout: dict) -> None:
        """A custom-scalars layout: {category: {chart title: ["Multiline", [tag regexes]]}}."""
        if self.tb is not None:
            with self._tb_io():
                self.tb.add_custom_scalars(layout)

    # --- run state -----------------------------------------------------------------------------
    def config(self, cfg: dict) -> None:
        """The run's fully resolved config as ``config.yaml``."""
        import yaml

        text = yaml.safe_dump(cfg, sort_keys=False)
        atomic_write(self.run_dir / "config.yaml", lambda tmp: tmp.write_text(text))

    def status(self, status: str, **extra) -> None:
        write_json(self.run_dir / "status.json", {"status": status, "time": time.time(), **extra})

    def flush(self, force: bool = False) -> None:
        """Write waiting table rows (all of them if ``force``, else once enough have gathered)."""
        for writer in self.tables.values():
            writer.flush(force)
        if self.tb is not None and force:
            with self._tb_io():
                self.tb.flush()

    def abandon(self) -> None:
        """Close the TensorBoard writer without a summary (the run failed); never raises: the error
        that stopped the run is the one to report."""
        if self.tb is not None:
            tb, self.tb = self.tb, None
            with contextlib.suppress(Exception):
                tb.close()

    def _close_tensorboard(self, summary: dict, hparams: dict) -> None:
        finals = {f"final/{k}": float(v) for k, v in summary["final"].items() if v is not None}
        for tag, value in finals.items():  # readable even where the HPARAMS tab is not
            self.tb.add_scalar(tag, value, summary["steps"], new_style=True)
        # add_hparams writes its metrics as step-0 scalars: give them their own tags
        self.tb.add_hparams(hparams, {f"hparam/{k}": v for k, v in finals.items()}, run_name=".")
        self.tb.close()
        self.tb = None

    def close(self, summary: dict, hparams: dict) -> None:
        """Final flush; hparams with the final metrics; summary.json and status.json."""
        self.flush(force=True)
        if self.tb is not None:
            with self._tb_io():
                self._close_tensorboard(summary, hparams)
        write_json(self.run_dir / "summary.json", summary)
        self.status(summary["status"], **{k: summary[k] for k in ("steps", "error") if summary.get(k) is not None})
