"""Shared fixtures: composed configs, a tiny fast model config, and the real CIFAR-10 copy."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist (`make test-all` runs one worker per core), each worker's torch and the runs it
# starts get the cores divided among the workers: two workers of two threads each on two cores
# contend for them (set before anything imports torch, which reads it once).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import pytest  # noqa: E402

from ics_study.compose import compose  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[1]
REQUIRE_REAL_DATA = os.environ.get("ICS_STUDY_REQUIRE_REAL_DATA") == "1"


# A CIFAR-shaped smoke setting that trains in a few seconds on two CPU cores.
TINY = [
    "data=synthetic", "data.num_train=512", "data.num_test=256", "data.batch_size=32", "data.eval_batch_size=256",
    "model.depth=11", "model.width=0.125", "trainer.max_steps=12", "trainer.eval_every=6", "trainer.log_every=5",
    "trainer.progress_bar=false", "trainer.device=cpu", "probe.every=4",
]
# VGG-16 (the figures' layers #3, #9, #11, #13 exist) at 1/16 width: the figure and report tests' runs
TINY16 = [a for a in TINY if not a.startswith("model.")] + ["model.depth=16", "model.width=0.0625"]


@pytest.fixture
def tiny_cfg():
    return lambda *extra: compose(TINY + list(extra))


def _shared_build_script() -> Path | None:
    env = os.environ.get("ICS_STUDY_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [p / "shared" / "data" / "cifar10" for p in [REPO.parent, *REPO.parents]]
    for folder in candidates:
        if (folder / "build.py").exists():
            return folder / "build.py"
    return None


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The shared real CIFAR-10 copy, built once into a cache folder outside the repository."""
    script = _shared_build_script()
    if script is None:
        message = "the shared CIFAR-10 copy (shared/data/cifar10/build.py) is not here"
        if REQUIRE_REAL_DATA:
            pytest.fail(message + " and ICS_STUDY_REQUIRE_REAL_DATA=1")
        pytest.skip(message)
    cache = Path(os.environ.get("ICS_STUDY_CIFAR_CACHE", Path.home() / ".cache" / "ics-study" / "cifar10"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    # one builder at a time: parallel test workers would write the same .partial folder
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([sys.executable, str(script), str(cache)], check=True, capture_output=True)
    return cache


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """``ics-study ARGS`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ics_study.cli", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout,
    )


def finished_cli_run(tmp_path_factory, name: str, args) -> Path:
    """A run made by ``ics-study train ARGS`` in a fresh folder; fails the test if it does not finish."""
    run = tmp_path_factory.mktemp(name) / "run"
    proc = run_cli("train", *args, f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr
    return run


def pytest_collection_modifyitems(items):
    """The files with real-data, then slow tests first, each in its collected order: the test workers
    take files in this order, and a long file taken last ran alone on one core while the other
    waited (longest first)."""
    rank = {}
    for item in items:
        key = 0 if item.get_closest_marker("realdata") else 1 if item.get_closest_marker("slow") else 2
        rank[item.path] = min(rank.get(item.path, 2), key)
    items.sort(key=lambda item: rank[item.path])  # stable: the order within a rank is kept
