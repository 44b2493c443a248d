"""A small recorded training trajectory of the three networks: the proof that a change to the
measurement, recording or loop code leaves training itself bit-identical.

``trajectory(tmp)`` trains standard, BN and noisy-BN VGG a few steps on synthetic CPU data with the
probes on and returns what training produces: every ``metrics`` row, every per-step channel moment
(and the per-channel min/max and layer summaries of the probes' full steps), and a digest of the
final weights. ``tests/fixtures/golden_trajectory.npz`` holds the same from the code before the
measurement change; ``tests/test_identical_training.py`` compares.

Regenerate (only when training is meant to change, and say so in the commit):

    .venv/bin/python tests/golden.py tests/fixtures/golden_trajectory.npz
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ics_study import checkpoint

MODELS = ("vgg", "vgg_bn", "vgg_bn_noise")
SETTINGS = [
    "data=synthetic", "data.num_train=512", "data.num_test=256", "data.batch_size=32", "data.eval_batch_size=256",
    "model.depth=11", "model.width=0.125", "trainer.max_steps=12", "trainer.eval_every=6", "trainer.log_every=5",
    "trainer.progress_bar=false", "trainer.device=cpu", "trainer.threads=1", "probe.every=4",
    "logger.tensorboard=false",
]
MOMENT_STATS = ("mean", "var", "min", "max")  # what training's activations are; histogram bins are not


def trajectory(tmp: Path) -> dict[str, np.ndarray]:
    from ics_study.compose import compose
    from ics_study.train import train

    out: dict[str, np.ndarray] = {}
    for model in MODELS:
        run = Path(tmp) / model
        run.mkdir(parents=True)
        train(compose(SETTINGS + [f"model={model}"]), run)
        m = pd.read_parquet(run / "metrics").assign(metric=lambda d: d.metric.astype(str))
        m = m.sort_values(["metric", "step"])
        out[f"{model}/metrics/name"] = m.metric.to_numpy().astype("U32")
        out[f"{model}/metrics/step"] = m.step.to_numpy()
        out[f"{model}/metrics/value"] = m.value.to_numpy()
        a = pd.read_parquet(run / "activations").assign(stat=lambda d: d.stat.astype(str))
        a = a.sort_values(["stat", "step", "layer", "channel"])
        keep = a.stat.isin(MOMENT_STATS) | a.stat.str.startswith("layer_")
        a = a[keep]
        out[f"{model}/activations/stat"] = a.stat.to_numpy().astype("U32")
        out[f"{model}/activations/key"] = a[["step", "layer", "channel"]].to_numpy()
        out[f"{model}/activations/value"] = a.value.to_numpy()
        state = checkpoint.read(run / "checkpoint.pt")["model"]
        digest = hashlib.sha256()
        for name in sorted(state):
            digest.update(name.encode())
            digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
        out[f"{model}/weights_sha256"] = np.array(digest.hexdigest())
        out[f"{model}/weights_sum"] = np.array([float(state[n].double().sum()) for n in sorted(state)])
    out["cpu_capability"] = np.array(torch.backends.cpu.get_cpu_capability())
    out["torch"] = np.array(torch.__version__)
    return out


if __name__ == "__main__":
    import tempfile

    target = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        data = trajectory(Path(tmp))
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, **data)
    print(f"wrote {target}: {len(data)} arrays")
