"""The numpy CRC-32C for TensorBoard's event records equals TensorBoard's own, and what it frames
reads back through TensorBoard's reader (which checks every record's CRC)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as reference

from ics_study.recording import event_crc


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 8191, 8192, 8193, 20_000, 65_536, 100_003])
def test_crc_equals_tensorboards(n):
    data = bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8))
    assert event_crc.crc32c(data) == reference.crc32c(data)
    assert event_crc.masked_crc32c(data) == reference.masked_crc32c(data)


def test_a_flipped_bit_changes_the_crc():
    data = bytearray(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8))
    before = event_crc.crc32c(bytes(data))
    data[1234] ^= 0x10
    after = event_crc.crc32c(bytes(data))
    assert after != before and after == reference.crc32c(bytes(data))


def test_installed_crc_frames_records_tensorboard_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.summary.writer import record_writer
    from torch.utils.tensorboard import SummaryWriter

    assert event_crc.install() and record_writer.masked_crc32c is event_crc.masked_crc32c
    writer = SummaryWriter(str(tmp_path))
    counts = np.arange(1, 2001, dtype=np.float64)  # one record of ~30 KB: the numpy path
    writer.add_histogram_raw("big", min=0.0, max=2000.0, num=float(counts.sum()), sum=1.0, sum_squares=1.0,
                             bucket_limits=list(np.arange(1.0, 2001.0)), bucket_counts=counts.tolist(), global_step=3)
    writer.add_scalar("small", 1.5, 3)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0, "scalars": 0}).Reload()
    assert list(events.Histograms("big")[0].histogram_value.bucket) == counts.tolist()
    assert events.Scalars("small")[0].value == 1.5
