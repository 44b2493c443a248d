"""A run that the reliability tests interrupt and resume, and the check that it matches one that was not."""

from __future__ import annotations

import json

import pandas as pd

from tests.conftest import TINY

ARGS = [*TINY, "model=vgg_bn_noise", "trainer.max_steps=40", "trainer.checkpoint_every=10", "trainer.eval_every=10",
        "ics.enabled=true", "ics.every=7", "ics.layers=[3,6]", "data.augment.flip=true",
        "sharpness.enabled=true", "sharpness.every=9", "sharpness.iterations=4"]  # its warm start is checkpointed


def tables(run):
    out = {}
    for name in ("metrics", "activations", "histograms"):
        df = pd.read_parquet(run / name)
        keys = [c for c in ("step", "metric", "layer", "channel", "stat") if c in df.columns]
        df = df.assign(**{c: df[c].astype(str) for c in ("metric", "stat") if c in df.columns})
        if "counts" in df.columns:
            df = df.assign(counts=df.counts.map(tuple), bin_edges=df.bin_edges.map(tuple))
        out[name] = df.sort_values(keys).reset_index(drop=True)
    return out


def assert_same_run(run, reference):
    a, b = tables(run), tables(reference)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert sa["final"] == sb["final"] and sa["status"] == "completed" and sa["steps"] == 40

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 41))  # no duplicated points
