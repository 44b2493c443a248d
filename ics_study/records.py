"""The recorder: writes what training and the probes return, to TensorBoard and to tidy tables.

It knows nothing of models or measurements. Callers hand it arrays; it writes

- ``metrics/``       (step, metric, value): one row per step and metric, e.g. ``train/loss``
- any other named table (``activations/``, ``histograms/``, ...) with the columns it is given
- TensorBoard events in the run dir (scalars, raw histograms, hparams, custom-scalar layouts)
- ``summary.json`` and ``status.json``, atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .config import LoggerConfig
from .storage import TableWriter, atomic_write, labels, write_json


class Recorder:
    def __init__(self, run_dir: Path, cfg: LoggerConfig, resume: tuple[int, dict[str, int]] | None = None):
        """``resume=(step, positions)`` continues a run: table parts written after the checkpoint's
        ``positions`` are deleted and TensorBoard events after ``step`` are purged."""
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.tables: dict[str, TableWriter] = {}
        if cfg.tables:
            import pandas  # noqa: F401  Arrow imports it at its first table: here, not in the first timed flush (~0.5 s)
        if resume is not None:
            self._truncate(resume[1])
        self.tb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume[0] + 1 if resume is not None else None
            # a deep queue: with the default 10, each flush waited on the writer thread event by event
            self.tb = SummaryWriter(log_dir=str(self.run_dir), max_queue=10_000, flush_secs=30, purge_step=purge)

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
        """TensorBoard points only (for series whose table is written elsewhere)."""
        if self.tb is None:
            return
        steps = np.asarray(steps, dtype=np.int64).tolist()
        for name, vals in values.items():
            for s, v in zip(steps, np.asarray(vals, dtype=np.float64).tolist()):
                self.tb.add_scalar(name, v, s)

    def table(self, name: str, **columns) -> None:
        if not self.cfg.tables:
            return
        if name not in self.tables:
            self.tables[name] = TableWriter(self.run_dir / name)
        self.tables[name].append(**columns)

    # --- TensorBoard only ----------------------------------------------------------------------
    def histogram(self, tag: str, step: int, edges: np.ndarray, counts: np.ndarray) -> None:
        """A histogram already binned on the device: ``counts[i]`` values in ``[edges[i], edges[i+1])``."""
        if self.tb is None:
            return
        counts = np.asarray(counts, dtype=np.float64)
        filled = np.flatnonzero(counts)
        if not len(filled):
            return
        # empty end bins carry nothing: leaving them out is exact (~36 of 64 bins remain in a noisy-BN run)
        counts, edges = counts[filled[0] : filled[-1] + 1], np.asarray(edges)[filled[0] : filled[-1] + 2]
        centres = 0.5 * (edges[:-1] + edges[1:])
        total = counts.sum()
        self.tb.add_histogram_raw(
            tag, min=float(edges[0]), max=float(edges[-1]), num=float(total),
            sum=float((counts * centres).sum()), sum_squares=float((counts * centres**2).sum()),
            bucket_limits=edges[1:].tolist(), bucket_counts=counts.tolist(), global_step=step,
        )

    def layout(self, layout: dict) -> None:
        """A custom-scalars layout: {category: {chart title: ["Multiline", [tag regexes]]}}."""
        if self.tb is not None:
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
            self.tb.flush()

    def abandon(self) -> None:
        """Close the TensorBoard writer without a summary (the run failed)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def close(self, summary: dict, hparams: dict) -> None:
        """Final flush; hparams with the final metrics; summary.json and status.json."""
        self.flush(force=True)
        if self.tb is not None:
            finals = {f"final/{k}": float(v) for k, v in summary["final"].items() if v is not None}
            for tag, value in finals.items():  # readable even where the HPARAMS tab is not
                self.tb.add_scalar(tag, value, summary["steps"], new_style=True)
            # add_hparams writes its metrics as step-0 scalars: give them their own tags
            self.tb.add_hparams(hparams, {f"hparam/{k}": v for k, v in finals.items()}, run_name=".")
            self.tb.close()
            self.tb = None
        write_json(self.run_dir / "summary.json", summary)
        self.status(summary["status"], **{k: summary[k] for k in ("steps", "error") if summary.get(k) is not None})
