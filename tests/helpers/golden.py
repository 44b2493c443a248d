"""A small recorded training trajectory of the three networks: the proof that a change to the
measurement, recording or loop code leaves training itself bit-identical.

``trajectory(tmp)`` trains standard, BN and noisy-BN VGG a few steps on synthetic CPU data with the
probes on and returns what training produces: every ``metrics`` row, every per-step channel moment
(and the per-channel min/max and layer summaries of the probes' full steps), and a digest of the
final weights. ``tests/fixtures/golden_trajectory.npz`` holds the same from the code before the
measurement change; ``tests/unit/train/test_identical_training.py`` compares.

``outputs(tmp)`` goes further, for refactors that must change nothing at all: digests of every
table, the summary (timing aside) and every part of the checkpoint, with ICS and the landscape on
(``tests/fixtures/golden_outputs.json``, recorded before the training loop was decomposed).

Both fixtures carry the machine they were recorded on (``machine()``: CPU model and instruction
sets, ATen's and oneDNN's kernel choice, library versions, threads). Where all of it matches, the
tests ask for every bit; the digests too on the machines listed under ``also_identical_on``, where
every digest was found equal (AMD EPYC family 26 model 2, 2026-12-07; a regeneration drops the
list). Elsewhere the trajectory is compared within ``SPREAD_FACTOR`` times the spread measured between forced kernel variants of the recording machine (``VARIANTS``), stored in
the fixture; ``tests/unit/train/test_identical_training.py`` also shows that real changes (another noise
stream, another learning rate, bf16) fall outside it.

Regenerate (only when training is meant to change, and say so in the commit; ~1 minute):

    .venv/bin/python tests/helpers/golden.py tests/fixtures/golden_trajectory.npz
    .venv/bin/python tests/helpers/golden.py tests/fixtures/golden_outputs.json

Forced variants do not cover every machine: on a CPU with AVX2 only (AMD EPYC family 25 model 1) the
noisy net's trajectory drifted from the AVX512 recording by up to 2e-3 of its late training loss, 50x
the variants' spread, from step 7 of 12 (steps 1-6 within 1e-6), while the standard and BN nets
stayed inside it. On such a machine, with training unchanged, widen the fixture's spread by what it
measures (``widen_with_this_machine``; the recording and its bit-for-bit test are kept):

    .venv/bin/python tests/helpers/golden.py --widen tests/fixtures/golden_trajectory.npz
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
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


def trajectory(tmp: Path, extra: tuple[str, ...] = (), models: tuple[str, ...] = MODELS) -> dict[str, np.ndarray]:
    from ics_study.compose import compose
    from ics_study.train import train

    out: dict[str, np.ndarray] = {}
    for model in models:
        run = Path(tmp) / model
        run.mkdir(parents=True)
        train(compose(SETTINGS + [f"model={model}", *extra]), run)
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
    out.update({f"machine/{k}": np.array(v) for k, v in machine().items()})
    return out


# What decides the bits of a CPU run: the kernels that ATen and oneDNN pick (from the CPU's
# instruction sets, or a cap set by ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA), the libraries'
# versions, and the thread count (summation order). Two AMD EPYCs that both read "AVX512" differed
# in 2 of 28 metric values, so the fixture keeps all of it and bit-identity is asked for only where
# every entry matches.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8")


def machine() -> dict[str, str]:
    info = {"model name": "", "cpu family": "", "model": "", "flags": ""}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in info and not info[key.strip()]:
                info[key.strip()] = value.strip()
    except OSError:  # not Linux
        pass
    flags = set(info["flags"].split())
    return {"cpu": f"{info['model name']} (family {info['cpu family']} model {info['model']})",
            "isa": " ".join(f for f in ISA_FLAGS if f in flags),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", ""),
            "torch": torch.__version__, "onednn": " ".join(re.findall(r"MKL-DNN v[\d.]+", torch.__config__.show())),
            "threads": str(dict(x.split("=") for x in SETTINGS if "=" in x)["trainer.threads"])}


# --- comparing a trajectory with the fixture -----------------------------------------------------
VALUES = ("metrics/value", "activations/value", "weights_sum")
# Kernel choices that real x86 machines make, forced on the recording machine: the spread between
# their trajectories is what another machine may legitimately show (measured when the fixture is
# recorded, stored in it as spread/...). Each variant runs with its own Inductor cache (that cache
# does not tell ATEN_CPU_CAPABILITY settings apart; see ics_study/models/noise_stream.py).
VARIANTS = {"aten_avx2": {"ATEN_CPU_CAPABILITY": "avx2"}, "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
            "onednn_avx512_core": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}}
SPREAD_FACTOR = 10  # tolerance = SPREAD_FACTOR x the measured spread of the value's group + REL_FLOOR
REL_FLOOR = 1e-6  # x (1 + |value|): two AMD EPYCs that both read AVX512 differed by 1e-7 relative


def _groups(t: dict, model: str, key: str) -> np.ndarray:
    """Values that share a scale and a step: a metric at a step, a statistic at a step, the weights."""
    if key == "metrics/value":
        return np.char.add(t[f"{model}/metrics/name"].astype(str), t[f"{model}/metrics/step"].astype(str))
    if key == "activations/value":
        return np.char.add(t[f"{model}/activations/stat"].astype(str), t[f"{model}/activations/key"][:, 0].astype(str))
    return np.zeros(len(t[f"{model}/{key}"]), dtype=str)


def spread(want: dict, variants: list[dict]) -> dict[str, np.ndarray]:
    """Per value: the largest difference, over the variants, within its group."""
    out = {}
    for model in MODELS:
        for key in VALUES:
            diff = np.max([np.abs(v[f"{model}/{key}"] - want[f"{model}/{key}"]) for v in variants], axis=0)
            groups = _groups(want, model, key)
            top = pd.Series(diff).groupby(groups).transform("max").to_numpy()
            out[f"spread/{model}/{key}"] = top
    return out


def same_machine(want: dict) -> bool:
    return all(str(want.get(f"machine/{k}", "")) == v for k, v in machine().items())


def differences(got: dict, want: dict, bitwise: bool) -> list[str]:
    """What differs beyond what the fixture allows: every bit (``bitwise``), else its measured spread."""
    out = []
    for model in MODELS:
        if f"{model}/metrics/name" not in got:
            continue
        for key in ("metrics/name", "metrics/step", "activations/stat", "activations/key"):
            if not np.array_equal(got[f"{model}/{key}"], want[f"{model}/{key}"]):
                out.append(f"{model} {key}")
        if out:
            continue
        for key in VALUES:
            a, b = got[f"{model}/{key}"], want[f"{model}/{key}"]
            tol = 0.0 if bitwise else SPREAD_FACTOR * want[f"spread/{model}/{key}"] + REL_FLOOR * (1 + np.abs(b))
            bad = np.abs(a - b) > tol
            if bad.any():
                i = int(np.argmax(bad))
                out.append(f"{model} {key}: {int(bad.sum())} of {bad.size} values, first {a[i]!r} vs {b[i]!r}")
        if bitwise and str(got[f"{model}/weights_sha256"]) != str(want[f"{model}/weights_sha256"]):
            out.append(f"{model} weights_sha256")
    return out


def widen_with_this_machine(target: Path) -> list[str]:
    """Where a real machine differs by more than the forced variants did (``VARIANTS`` cannot force
    every kernel that a CPU of another class picks), that measured difference joins the fixture's
    spread, as ``spread()`` groups it: the tolerance of other machines becomes 10x the larger of the
    two. The recorded trajectory itself, and so the bit-for-bit test on its machine, stay as they were.
    Run it only on a commit whose training is unchanged since the recording (the test's own history
    says so); ``test_a_real_change...`` must still fail the changes it lists. Returns the machines
    that have widened it."""
    want = dict(np.load(target))
    with tempfile.TemporaryDirectory() as tmp:
        here = trajectory(Path(tmp))
    observed = spread(want, [here])
    widened = {k: np.maximum(want[k], v) for k, v in observed.items()}
    by = [*want.get("widened_by", np.array([], dtype="U200")).tolist(), machine()["cpu"] + " " + machine()["isa"]]
    np.savez_compressed(target, **{**want, **widened, "widened_by": np.array(by, dtype="U200")})
    return by


def record_trajectory(target: Path) -> None:
    """The trajectory here, and the spread of the kernel variants (each in its own process)."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        want = trajectory(Path(tmp) / "here")
        variants = []
        for name, env in VARIANTS.items():
            path = Path(tmp) / f"{name}.npz"
            subprocess.run([sys.executable, __file__, "--plain", str(path)], check=True,
                           env={**os.environ, **env, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / f"inductor-{name}")})
            variants.append(dict(np.load(path)))
        np.savez_compressed(target, **want, **spread(want, variants))


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

    out: dict = {"machine": machine()}
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

    plain = sys.argv[1] == "--plain"  # the trajectory alone (one kernel variant of record_trajectory)
    target = Path(sys.argv[-1])
    if sys.argv[1] == "--widen":
        print(f"{target}: spread widened by {widen_with_this_machine(target)}")
        sys.exit(0)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if target.suffix == ".json":
            target.write_text(json.dumps(outputs(Path(tmp)), indent=1, sort_keys=True) + "\n")
        elif plain:
            np.savez_compressed(target, **trajectory(Path(tmp)))
        else:
            record_trajectory(target)
    print(f"wrote {target}")
