"""Checkpoints: everything needed to continue a run exactly where it stopped.

``checkpoint.pt`` in the run dir holds the model, the optimiser, the step, every random state
(torch CPU and CUDA, the noise generator, the data order and augmentation streams, the probes'
own), the number of table parts written so far, the timing so far, and the config that matters
for the trajectory. It is written atomically (temporary file, fsync, rename) and read back with
``torch.load(weights_only=True)``: a checkpoint holds tensors and plain values only, never code.

The file wraps the serialised state with its CRC-32 (``FORMAT``): a flipped bit anywhere in it is
refused by name instead of resuming from silently wrong weights (measured: 141 of 200 random bit
flips in a plain ``torch.save`` file loaded without error, with different values). Checking costs
one pass over the bytes (~1 GB/s; a paper-scale VGG-16 checkpoint is ~0.1 GB). Files written before
the wrapper (a plain state dict) still load.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zlib
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import UserError
from ..recording.storage import atomic_write

FILENAME = "checkpoint.pt"
FORMAT = "ics-study-checkpoint/2"  # {"format", "crc32", "payload": the torch.save bytes of the state}
REQUIRED = {"step": int, "config": str, "model": dict, "optimizer": dict, "batches": dict, "rng": dict,
            "progress": dict, "tables": dict}
# trainer/logger settings that do not change the numbers a run produces
_FREE = {"trainer": {"max_steps", "progress_bar", "log_every", "eval_every", "checkpoint_every", "resume", "threads",
                     "reuse_host_memory", "device", "compile", "compile_mode", "steady_after", "lock_wait_s"}, "logger": {"tensorboard", "tables"},
         "probe": {"side_stream"}, "paths": None}


def trajectory_config(cfg: TrainConfig) -> dict:
    """The part of the config that determines the training trajectory."""
    return _without_free(dataclasses.asdict(cfg))


def _without_free(d: dict) -> dict:
    """``d`` less the settings that do not change the numbers (also applied to a saved config, which
    may hold a setting declared free after it was written)."""
    for group, keys in _FREE.items():
        if keys is None:
            d.pop(group, None)
        else:
            for k in keys:
                d.get(group, {}).pop(k, None)
    return d


class ConfigMismatch(UserError):
    """The run dir's checkpoint belongs to other settings: this command's mistake, not the run's."""


_MISSING = object()


def _differences(saved: dict, now: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ. A key the checkpoint predates (added to the code later) counts as
    its default, so that adding an option never makes the runs made before it unresumable."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b, default = saved.get(k, _MISSING), now.get(k, _MISSING), (defaults or {}).get(k, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, default if isinstance(default, dict) else {}, f"{prefix}{k}.")
        elif a is _MISSING and b == default:
            continue
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The trajectory settings in which a saved config differs from ``cfg``."""
    return _differences(_without_free(saved), trajectory_config(cfg), trajectory_config(TrainConfig()))


def find(path: str | Path) -> Path | None:
    """The checkpoint file at ``path`` (a file or a run dir), or None."""
    path = Path(path).expanduser()
    candidate = path / FILENAME if path.is_dir() else path
    return candidate if candidate.is_file() else None


def save(path: Path, cfg: TrainConfig, **state) -> None:
    state["config"] = json.dumps(trajectory_config(cfg), sort_keys=True)
    buffer = io.BytesIO()  # serialised in memory: a full disk then raises OSError from the plain write
    torch.save(state, buffer)  # (torch.save onto the disk turns it into a RuntimeError)
    payload = buffer.getvalue()
    wrapped = io.BytesIO()
    torch.save({"format": FORMAT, "crc32": zlib.crc32(payload), "payload": payload}, wrapped)
    atomic_write(path, lambda tmp: tmp.write_bytes(wrapped.getbuffer()))


def read(path: Path) -> dict:
    """The state in ``path``, checked whole; UserError naming the file if it is not."""
    def broken(why: str) -> UserError:
        return UserError(f"checkpoint {path} is damaged ({why}); delete it to start afresh")

    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(outer, dict) and outer.get("format") == FORMAT:
            payload = outer.get("payload")
            if not isinstance(payload, bytes) or zlib.crc32(payload) != outer.get("crc32"):
                raise broken("its checksum does not match")
            outer = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as e:  # whatever a flipped byte breaks first (the zip, the pickle, a latin-1 decode)
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise broken(f"it does not load: {first[:200]}") from None
    if not isinstance(outer, dict):
        raise broken(f"it holds a {type(outer).__name__}, not a checkpoint")
    for key, kind in REQUIRED.items():
        if not isinstance(outer.get(key), kind) or isinstance(outer.get(key), bool):
            raise broken(f"'{key}' is missing or not a {kind.__name__}")
    try:
        json.loads(outer["config"])
    except ValueError:
        raise broken("its config is not JSON") from None
    return outer


def saved_step(run_dir: Path) -> int | None:
    """The step of the checkpoint in ``run_dir``, or None if there is none that loads."""
    try:
        return read(Path(run_dir) / FILENAME)["step"]
    except UserError:
        return None


def finished_without(run_dir: Path, cfg: TrainConfig) -> int | None:
    """The steps of a finished run in ``run_dir`` whose checkpoint is gone (completed at ``cfg``'s
    max_steps, or diverged: it would diverge again), where its ``config.yaml`` matches ``cfg`` for
    the trajectory; else None (train as usual). Published runs keep their tables and drop their
    weights (results/reference/runs: 5 MB a run at width 1/4): rerunning their sweep must return at
    once, not train them again into tables that are already there."""
    import yaml

    summary, config = run_dir / "summary.json", run_dir / "config.yaml"
    if find(run_dir) is not None or not (summary.is_file() and config.is_file()):
        return None
    try:
        done, saved = json.loads(summary.read_text()), yaml.safe_load(config.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not (isinstance(done, dict) and isinstance(saved, dict) and isinstance(done.get("steps"), int)):
        return None
    ended = done.get("status") == "diverged" or (done.get("status") == "completed" and done["steps"] >= cfg.trainer.max_steps)
    if not ended:
        return None
    return None if _config_differences(saved, cfg) else done["steps"]


def load(path: Path, cfg: TrainConfig) -> dict:
    state = read(path)
    diff = _config_differences(json.loads(state["config"]), cfg)
    if diff:
        raise ConfigMismatch(f"checkpoint {path} was written with a different config (differs in: {', '.join(diff[:6])}); "
                        "use the same settings, or another run dir to start afresh")
    return state


def rng_state(generators: dict[str, torch.Generator | None]) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, g in generators.items():
        if g is not None:
            state[name] = g.get_state()
    return state


def restore_rng(state: dict, generators: dict[str, torch.Generator | None]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        if g is not None and name in state:
            g.set_state(state[name])
