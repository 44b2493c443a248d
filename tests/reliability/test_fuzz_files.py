"""Damaged files, generated rather than hand-picked: each CIFAR-10 batch, ``checkpoint.pt``, and each
``summary.json``/``status.json`` that ``sweep``/``aggregate``/``report`` read, truncated at random
lengths, with random bit flips, and holding the wrong pickled or JSON types.

Every case must either read back valid data (a flip that lands in pixel bytes changes a pixel, and
nothing can tell) or be refused with a message that names the broken file; the readers of run
records must then go on with the other runs. The number of cases each run tries is asserted, so
that it is stated and cannot shrink silently: docs/reliability.md quotes it.
"""

from __future__ import annotations

import logging
import pickle
import shutil

import numpy as np
import pytest
import torch

from ics_study.analysis import aggregate, run_records, sweeps
from ics_study.data import cifar10
from ics_study.errors import UserError
from ics_study.train import checkpoint, train
from tests.conftest import TINY, compose, run_cli
from tests.helpers.data import write_fake_cifar

TRUNCATIONS, FLIPS = 4, 8


def truncated(data: bytes, rng) -> list[bytes]:
    return [data[:0]] + [data[: int(rng.integers(1, len(data)))] for _ in range(TRUNCATIONS - 1)]


def flipped(data: bytes, rng) -> list[bytes]:
    out = []
    for _ in range(FLIPS):
        d = bytearray(data)
        d[int(rng.integers(len(d)))] ^= 1 << int(rng.integers(8))
        out.append(bytes(d))
    return out


# --- CIFAR-10 batches ------------------------------------------------------------------------------
def wrong_batches(n: int) -> list[bytes]:
    good = np.zeros((n, 3072), np.uint8)
    objects = [[1, 2, 3], "data", 42, None, {b"labels": [0] * n}, {b"data": good},
               {b"data": good.astype(np.float32), b"labels": [0] * n}, {b"data": good[:, :100], b"labels": [0] * n},
               {b"data": good, b"labels": [10] * n}, {b"data": good, b"labels": [0] * (n - 1)},
               {b"data": good.tolist(), b"labels": [0] * n}, {b"data": good, b"labels": ["cat"] * n}]
    return [pickle.dumps(o, protocol=2) for o in objects]


@pytest.mark.parametrize("name", cifar10.TRAIN_FILES + cifar10.TEST_FILES)
def test_every_damaged_cifar_batch_is_named_or_reads_as_valid_data(tmp_path, name):
    n = 20
    folder = write_fake_cifar(tmp_path, n)
    rng = np.random.default_rng(sum(map(ord, name)))
    original = (folder / name).read_bytes()
    cases = truncated(original, rng) + flipped(original, rng) + wrong_batches(n)
    refused = 0
    for damaged in cases:
        (folder / name).write_bytes(damaged)
        try:
            x_train, y_train, x_test, y_test = cifar10.load_cifar10(tmp_path, download=False)
        except UserError as e:
            assert name in str(e) and "\n" not in str(e), str(e)
            refused += 1
        else:  # only a flip inside the pixel or label bytes can still read: then the data is well-formed
            assert x_train.shape == (5 * n, 3, 32, 32) and x_test.shape == (n, 3, 32, 32)
            assert int(torch.cat([y_train, y_test]).max()) <= 9 and int(torch.cat([y_train, y_test]).min()) >= 0
    assert len(cases) == TRUNCATIONS + FLIPS + 12 == 24
    assert refused >= TRUNCATIONS + 12  # every truncation and every wrong type


def test_a_damaged_batch_stops_training_with_one_line(tmp_path):
    folder = write_fake_cifar(tmp_path)
    data = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(data[: len(data) // 3])
    proc = run_cli("train", "data=cifar10", f"data.root={tmp_path}", "data.download=false", *TINY[1:],
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ics-study: error:") and "data_batch_3" in lines[0], proc.stderr


# --- checkpoint.pt -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(compose([*TINY, "model=vgg_bn_noise", "trainer.max_steps=6", "trainer.checkpoint_every=6"]), run)
    return run


def wrong_checkpoints(good: dict) -> list[bytes]:
    def saved(obj) -> bytes:
        import io

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    missing = {k: v for k, v in good.items() if k != "model"}
    return [saved([1, 2]), saved("checkpoint"), saved(missing), saved({**good, "step": "6"}),
            saved({**good, "config": "{not json"}), saved({**good, "progress": [0]}),
            saved({"format": checkpoint.FORMAT, "crc32": 0, "payload": saved(good)}),  # a wrong checksum
            saved({"format": checkpoint.FORMAT, "crc32": 1, "payload": "text"})]


def test_every_damaged_checkpoint_is_refused_by_name(saved_run):
    path = saved_run / checkpoint.FILENAME
    original = path.read_bytes()
    good = checkpoint.read(path)
    rng = np.random.default_rng(3)
    cases = truncated(original, rng) + [d for _ in range(3) for d in flipped(original, rng)] + wrong_checkpoints(good)
    cfg = compose([*TINY, "model=vgg_bn_noise", "trainer.max_steps=6", "trainer.checkpoint_every=6"])
    silent = 0
    try:
        for damaged in cases:
            path.write_bytes(damaged)
            try:
                state = checkpoint.load(path, cfg)
            except UserError as e:
                assert str(path) in str(e) and "\n" not in str(e), str(e)
            else:  # a flip in the zip's own bookkeeping that changes nothing read
                silent += 1
                assert all(torch.equal(state["model"][k], good["model"][k]) for k in good["model"])
                assert state["step"] == good["step"] and state["progress"] == good["progress"]
    finally:
        path.write_bytes(original)
    assert len(cases) == TRUNCATIONS + 3 * FLIPS + 8 == 36


def test_a_damaged_checkpoint_stops_a_resume_with_one_line(saved_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(saved_run, run)
    data = bytearray((run / checkpoint.FILENAME).read_bytes())
    data[len(data) // 2] ^= 0x10  # in the middle of the weights
    (run / checkpoint.FILENAME).write_bytes(bytes(data))
    proc = run_cli("train", *TINY, "model=vgg_bn_noise", "trainer.max_steps=8", "trainer.checkpoint_every=6",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint" in lines[0] and "damaged" in lines[0] and "delete it" in lines[0], proc.stderr


# --- summary.json and status.json ------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    for seed in range(3):
        train(compose([*TINY, f"seed={seed}", "trainer.max_steps=6"]), root / f"{seed}_seed{seed}")
    return root


WRONG_JSON = ["[1, 2]", '"completed"', "null", "{}", '{"status": 5, "steps": 6, "final": {}}',
              '{"status": "completed", "steps": "six", "final": {}}', '{"status": "completed", "steps": 6, "final": [1]}',
              '{"status": "completed", "steps": 6, "final": {"test_acc": "high"}}']


@pytest.mark.parametrize("record", ["summary.json", "status.json"])
def test_broken_run_records_are_named_and_the_other_runs_go_on(three_runs, tmp_path, caplog, record):
    rng = np.random.default_rng(len(record))
    original = (three_runs / "1_seed1" / record).read_bytes()
    cases = truncated(original, rng) + flipped(original, rng) + [t.encode() for t in WRONG_JSON]
    named = 0
    for i, damaged in enumerate(cases):
        root = tmp_path / f"case{i}"
        shutil.copytree(three_runs, root)
        broken = root / "1_seed1" / record
        broken.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ics_study"):
            table = sweeps.jobs(root)
            rows = aggregate.load([root])
        warned = [r.getMessage() for r in caplog.records if str(broken) in r.getMessage()]
        readable = (run_records.read_summary if record == "summary.json" else run_records.read_status)(broken.parent)
        assert bool(warned) == (not readable), (damaged, warned)
        named += bool(warned)
        assert len(warned) <= 1  # one line per broken file, however often it is read
        assert set(table.job) == {"0_seed0", "1_seed1", "2_seed2"}
        finished = set(rows[rows.metric == "summary/steps"].job)
        assert {"0_seed0", "2_seed2"} <= finished  # the other runs are all there
        assert ("1_seed1" in finished) == (record == "status.json" or bool(readable))
    assert len(cases) == TRUNCATIONS + FLIPS + len(WRONG_JSON) == 20
    assert named >= 7  # at least the empty file and the six wrong types that neither record accepts


def test_report_names_a_broken_summary_and_reports_the_rest(three_runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(three_runs, root)
    (root / "1_seed1" / "summary.json").write_text('{"status": "completed", "steps"')
    proc = run_cli("report", str(root), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    assert str(root / "1_seed1" / "summary.json") in proc.stderr and "ignoring" in proc.stderr
    assert "Traceback" not in proc.stderr
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| variant | lr | seeds |"))
    row = [c.strip() for c in lines[header + 2].split("|")]
    assert row[3] == "2", lines[header:header + 3]  # the two intact runs, the broken one left out
