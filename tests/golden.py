"""A small recorded training trajectory of the three networks: the proof that a change to the
measurement, recording or loop code leaves training itself bit-identical.

``trajectory(tmp)`` trains standard, BN and noisy-BN VGG a few steps on synthetic CPU data with the
probes on and returns what training produces: every ``metrics`` row, every per-step channel moment
(and the per-channel min/max and layer summaries of the probes' full steps), and a digest of the
final weights. ``tests/fixtures/golden_trajectory.npz`` holds the same from the code before the
measurement change; ``tests/test_identical_training.py`` compares.

``outputs(tmp)`` goes further, for refactors that must change nothing at all: digests of every
table, the summary (timing aside) and every part of the checkpoint, with ICS and the landscape on
(``tests/fixtures/golden_outputs.json``, recorded before the training loop was decomposed).

Regenerate (only when training is meant to change, and say so in the commit):

    .venv/bin/python tests/golden.py tests/fixtures/golden_trajectory.npz
    .venv/bin/python tests/golden.py tests/fixtures/golden_outputs.json
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ics_study.train import checkpoint

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


# --- every output, as digests (tests/fixtures/golden_outputs.json) ---------------------------------
TABLES = ("metrics", "activations", "histograms", "probe_channels")
SUMMARY_TIMING = {"wall_time_s", "eval_time_s", "checkpoint_time_s", "train_images_per_s", "steady_images_per_s",
                  "peak_memory_gb"}
PROGRESS_TIMING = {"train_time", "eval_time", "checkpoint_time"}


def _feed(digest, value) -> None:
    """A canonical byte stream of nested dicts, lists, tensors, arrays and plain values."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(f"<{key}>".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for v in value:
            _feed(digest, v)
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else repr(value.tolist()).encode())
    else:
        digest.update(repr(value).encode())


def digest_of(value) -> str:
    d = hashlib.sha256()
    _feed(d, value)
    return d.hexdigest()


def table_digest(folder: Path) -> str:
    df = pd.read_parquet(folder)
    df = df.assign(**{c: df[c].astype(str) for c in df.columns if df[c].dtype.name == "category"})
    keys = [c for c in ("step", "metric", "layer", "channel", "stat", "rank") if c in df.columns]
    df = df.sort_values(keys, kind="stable").reset_index(drop=True)
    return digest_of({c: (df[c].to_numpy() if df[c].dtype != object else [np.asarray(v).tolist() if hasattr(v, "__len__")
                                                                         and not isinstance(v, str) else v for v in df[c]])
                      for c in sorted(df.columns)})


def outputs(tmp: Path) -> dict:
    """Digests of everything the three networks' short runs write that is not a time figure: each
    table, the summary, and each part of the checkpoint (weights, optimiser, random states, data
    order, probes, table positions, progress)."""
    from ics_study.compose import compose
    from ics_study.train import train

    out: dict = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}
    for model in MODELS:
        run = Path(tmp) / f"out-{model}"
        run.mkdir(parents=True)
        summary = train(compose(SETTINGS + [f"model={model}", "ics.enabled=true", "ics.every=5", "ics.layers=[2,5]",
                                            "landscape.enabled=true", "landscape.every=6"]), run)
        got = {f"table/{name}": table_digest(run / name) for name in TABLES if (run / name).exists()}
        got["summary"] = digest_of({k: v for k, v in summary.items() if k not in SUMMARY_TIMING})
        state = checkpoint.read(run / checkpoint.FILENAME)
        state["progress"] = {k: v for k, v in state["progress"].items() if k not in PROGRESS_TIMING}
        got.update({f"checkpoint/{k}": digest_of(v) for k, v in state.items()})
        out[model] = got
    return out


if __name__ == "__main__":
    import json
    import tempfile

    target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if target.suffix == ".json":
            target.write_text(json.dumps(outputs(Path(tmp)), indent=1, sort_keys=True) + "\n")
        else:
            np.savez_compressed(target, **trajectory(Path(tmp)))
    print(f"wrote {target}")
