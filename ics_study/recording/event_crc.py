"""CRC-32C of TensorBoard event records in numpy, for the big ones (the probes' histograms).

TensorBoard frames every event record with a masked CRC-32C that it computes byte by byte in pure
Python (``tensorboard.compat.tensorflow_stub.pywrap_tensorflow.crc32c``: 0.12 us per byte on the CPU
here), on the SummaryWriter's thread, holding the GIL that the training loop needs. At default probes
a run writes ~1 KB of events per step, mostly the 112 histograms every 100 steps: ~0.1 ms of that
thread per step, more than all the rest of the probes' host work.

Here a record of at least ``MIN_BYTES`` is checked in blocks: CRC is linear over GF(2), so the CRCs of
``BLOCK``-byte blocks are computed side by side (``BLOCK`` numpy steps over all blocks) and folded
pairwise, crc(a || b) = shift(crc(a), len(b)) ^ crc(b), where shift (feeding zero bytes) is itself
linear: four 256-entry tables per doubling of the block length. A zero prefix does not change a CRC
that starts from 0, which pads the message to a power-of-two number of blocks; the start value
0xFFFFFFFF is the same as XOR-ing it into the first four bytes. Smaller records use TensorBoard's own
function. ``install()`` checks this against TensorBoard's CRC before it puts it in place.
"""

from __future__ import annotations

import numpy as np

POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
BLOCK = 64  # bytes per block: BLOCK sequential numpy steps, then log2(blocks) folding steps
MIN_BYTES = 4096  # below this, numpy's per-call overhead beats the gain: TensorBoard's loop


def _byte_table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ POLY, t >> 1).astype(np.uint32)
    return t


TABLE = _byte_table()


def _feed_zeros(nbytes: int) -> np.ndarray:
    """The linear map "feed ``nbytes`` zero bytes" as (4, 256) tables, one per byte of the register."""
    x = np.arange(256, dtype=np.uint32)[None, :] << (8 * np.arange(4, dtype=np.uint32)[:, None])
    for _ in range(nbytes):
        x = TABLE[x & 0xFF] ^ (x >> 8)
    return x


def _apply(shift: np.ndarray, crc: np.ndarray) -> np.ndarray:
    return shift[0][crc & 0xFF] ^ shift[1][(crc >> 8) & 0xFF] ^ shift[2][(crc >> 16) & 0xFF] ^ shift[3][crc >> 24]


_SHIFTS = [_feed_zeros(BLOCK)]  # _SHIFTS[k]: feed BLOCK * 2**k zero bytes


def _shift(level: int) -> np.ndarray:
    while len(_SHIFTS) <= level:
        _SHIFTS.append(_apply(_SHIFTS[-1], _SHIFTS[-1]))  # doubling: the map composed with itself
    return _SHIFTS[level]


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (start 0xFFFFFFFF, final XOR 0xFFFFFFFF), as TensorBoard computes it."""
    if len(data) < MIN_BYTES:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as reference

        return reference(data)
    blocks = 1 << (-(-len(data) // BLOCK) - 1).bit_length()
    buf = np.zeros(blocks * BLOCK, dtype=np.uint8)
    start = len(buf) - len(data)
    buf[start:] = np.frombuffer(data, dtype=np.uint8)
    buf[start : start + 4] ^= 0xFF  # the start value
    columns = buf.reshape(blocks, BLOCK).T.astype(np.uint32)
    crc = np.zeros(blocks, dtype=np.uint32)
    for column in columns:
        crc = TABLE[(crc ^ column) & 0xFF] ^ (crc >> 8)
    level = 0
    while len(crc) > 1:
        crc = _apply(_shift(level), crc[0::2]) ^ crc[1::2]
        level += 1
    return int(crc[0]) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TensorBoard's record checksum: the CRC rotated right by 15 bits plus a constant."""
    x = crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def install() -> bool:
    """Make TensorBoard's event writer use ``masked_crc32c``; only if it agrees with TensorBoard's
    own on a test record (otherwise nothing changes). Returns whether it is in place."""
    try:  # another TensorBoard layout: keep its own CRC
        from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
        from tensorboard.summary.writer import record_writer
    except ImportError:
        return False
    if not hasattr(record_writer, "masked_crc32c"):
        return False

    if record_writer.masked_crc32c is masked_crc32c:
        return True
    test = bytes(np.random.default_rng(0).integers(0, 256, 3 * MIN_BYTES + 5, dtype=np.uint8))
    if masked_crc32c(test) != pywrap_tensorflow.masked_crc32c(test):
        return False
    record_writer.masked_crc32c = masked_crc32c
    return True
