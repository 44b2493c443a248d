"""``train(cfg, run_dir) -> summary``: the training loop. No Hydra here; the CLI calls this.

Protocol (``../shared/docs/PROTOCOL.md``): SGD on cross-entropy, batch 128, constant lr, a fixed
number of steps. Step t means: forward/backward on batch t, then update t. The train loss and
accuracy of step t are those of batch t before its update; an evaluation at step t sees the
weights after update t.

Speed rules: the dataset lives on the device; per-step metrics are accumulated in a device buffer
and read back once every ``trainer.log_every`` steps (the only host sync outside evaluation);
probes keep their own device buffers and are flushed at the same moments. On a GPU, plain steps
and the probes' histogram steps replay CUDA graphs (``graphed_step.py``); ICS and landscape steps
stay eager.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import build_data
from ..data.tasks import task_for
from ..errors import UserError
from ..models import build_model, set_noise_generator
from ..probes import ActivationProbe, ICSProbe, LandscapeProbe, PendingScalars, Replay
from ..recording.recorder import Recorder
from ..recording.storage import read_json, write_json
from ..validate import validate, validate_layers
from . import checkpoint
from .evaluation import NOISY_MODES, NoisyEvaluation, evaluate
from .graphed_step import GraphedStep, optimizer_ready, wanted
from .host_memory import keep_freed_memory
from .precision import autocast, bf16_note
from .readback import ReadBack
from .run_lock import RunLock
from .stop_signal import StopSignal

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=cpu or auto")
    return device


def noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """The noisy BN's own stream, so that adding a probe never shifts another source of randomness."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1000 + 1)
    return g


def train(cfg: TrainConfig, run_dir: str | Path, on_step: Callable[[int], None] | None = None) -> dict:
    """Train as ``cfg`` says, writing into ``run_dir``; continues from ``run_dir/checkpoint.pt`` (or
    ``trainer.resume``) when there is one. Returns the summary that is also ``summary.json``.
    ``on_step(step)``, if given, is called once each training step has been queued (before that
    step's flush, evaluation or checkpoint): for tools such as a profiler's schedule.

    The run dir written into is locked for the whole run (``run_lock.py``): a second process on it
    is refused with ``RunLocked`` before it reads or writes anything there."""
    validate(cfg)
    target = Path(run_dir)
    if cfg.trainer.resume and (found := checkpoint.find(cfg.trainer.resume)) is not None:
        target = found.parent  # a resume writes into the run being resumed
    target.mkdir(parents=True, exist_ok=True)
    with RunLock(target, cfg.trainer.lock_wait_s):
        return _train(cfg, Path(run_dir), on_step)


def _train(cfg: TrainConfig, run_dir: Path, on_step: Callable[[int], None] | None) -> dict:
    t = cfg.trainer
    source = checkpoint.find(t.resume) if t.resume else checkpoint.find(run_dir)
    if t.resume and source is None:
        raise UserError(f"trainer.resume={t.resume}: no {checkpoint.FILENAME} there")
    state = checkpoint.load(source, cfg) if source is not None else None
    if state is not None and t.resume:
        run_dir = source.parent  # continue writing into the run being resumed
    if state is not None and state["step"] >= t.max_steps and (run_dir / "summary.json").exists():
        log.info("%s already holds %d steps: nothing to do", run_dir, state["step"])
        summary = json.loads((run_dir / "summary.json").read_text())
        status = read_json(run_dir / "status.json") or {}
        if status.get("status") != summary["status"]:  # e.g. a refused rerun of an older version marked it
            write_json(run_dir / "status.json", {"status": summary["status"], "time": time.time()})
        return summary

    device = pick_device(t.device)
    if (note := bf16_note(device, t.precision)) is not None:
        log.warning(note)
    torch.set_num_threads(t.threads or torch.get_num_threads())
    if device.type == "cpu" and t.reuse_host_memory:
        keep_freed_memory()
    if t.deterministic:
        # cuBLAS is deterministic only with a fixed workspace, set before its first use in the process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic
        if device.index is not None:
            torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)  # per job, also when a sweep shares the process

    torch.manual_seed(cfg.seed)  # weights
    model = build_model(cfg.model).to(device)
    validate_layers(cfg, len(model.blocks))  # before the data: a wrong layer number fails at once
    data = build_data(cfg.data, cfg.seed, device)
    task = task_for(cfg.data)
    if t.channels_last and cfg.data.name != "linear_regression":
        model = model.to(memory_format=torch.channels_last)
        data.channels_last = True
    noise = noise_generator(cfg.seed, device)
    uses_noise = set_noise_generator(model, noise) > 0
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    batches = data.train_batches(cfg.data.batch_size, cfg.seed, cfg.data.drop_last, cfg.data.augment)
    probe = ActivationProbe(model, cfg.probe, cfg.seed, data) if cfg.probe.enabled else None
    noisy_eval = NoisyEvaluation.build(model, data, task, cfg.eval, cfg.seed, device, t.precision, cfg.data.batch_size)

    done = {"step": 0, "images": 0, "train_time": 0.0, "eval_time": 0.0, "last_train": [math.nan, math.nan],
            "last_test": [None, None], "last_noisy_modes": {}}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        batches.load_state_dict(state["batches"])
        checkpoint.restore_rng(state["rng"], {"noise": noise})
        if probe is not None:
            probe.load_state_dict(state["probe"])
        if noisy_eval is not None and state.get("noisy_eval"):
            noisy_eval.load_state_dict(state["noisy_eval"])
        done = state["progress"]
        log.info("resuming %s from step %d (%s)", run_dir, done["step"], source)

    recorder = Recorder(run_dir, cfg.logger, resume=(done["step"], state["tables"]) if state is not None else None)
    recorder.config(dataclasses.asdict(cfg))
    recorder.status("running", steps=done["step"])
    if probe is not None and state is None:
        recorder.layout(probe.tensorboard_layout())
    if probe is not None:  # its one-off set-up, outside compiled code and graph captures
        probe.prepare(model, data.normalize(data.x_train[: cfg.data.batch_size]))
    # compile after the probe's hooks are registered; measurements use the eager module
    forward = torch.compile(model, mode=t.compile_mode, dynamic=False) if t.compile else model
    ics = ICSProbe(cfg.ics)
    landscape = LandscapeProbe(cfg.landscape, cfg.optim.lr)
    replay = Replay(model, noise)
    measured = PendingScalars()  # ICS and landscape values, read back at each flush
    graphed = None
    if wanted(t.cuda_graph, device, t.compile_mode if t.compile else None):
        graphed = GraphedStep(model, forward, optimizer, task, probe, noise if uses_noise else None, t.precision)

    buffer = torch.full((t.log_every, 2), math.nan, device=device)  # (loss, accuracy) of each pending step
    pending: list[int] = []
    status, diverged_at = "completed", None
    bar = _progress(t, done["step"])
    # training time excludes evaluation and checkpoint writing (reported apart; wall time has all)
    segment_start, segment_images, segment_eval, segment_ckpt = time.perf_counter(), 0, 0.0, 0.0
    done.setdefault("checkpoint_time", 0.0)  # absent in checkpoints written before it was counted

    def segment_training_time() -> float:
        return time.perf_counter() - segment_start - segment_eval - segment_ckpt

    steady_from = done["step"] + t.steady_after  # (images, training time) there: see steady_images_per_s
    steady_mark: tuple[int, float] | None = None

    readback = ReadBack(device)

    def write_train(steps: np.ndarray, host: np.ndarray) -> None:
        nonlocal diverged_at
        train_metrics = {"train/loss": host[:, 0], "train/acc": host[:, 1]}
        if task.accuracy is None:
            del train_metrics["train/acc"]
        recorder.scalars(steps, train_metrics)
        done["last_train"] = [float(host[-1, 0]), float(host[-1, 1])]
        if bar is not None:
            rate = segment_images / max(segment_training_time(), 1e-9)
            bar.update(len(steps))
            bar.set_postfix(loss=f"{host[-1, 0]:.3f}", acc=f"{host[-1, 1]:.3f}", img_s=f"{rate:.0f}")
        bad = ~np.isfinite(host[:, 0])
        if bad.any() and diverged_at is None:
            diverged_at = int(steps[bad.argmax()])

    def flush(wait: bool) -> bool:
        """Start copying pending metrics and probe records to the host; write whatever has arrived
        (everything, if ``wait``). Returns False once training is known to have diverged."""
        steps = np.asarray(pending)
        readback.start(buffer[: len(pending)], lambda host: write_train(steps, host))
        for source in (probe, measured):
            collected = source.collect(recorder) if source is not None else None
            if collected is not None:
                readback.start(*collected)
        pending.clear()
        readback.drain() if wait else readback.poll()
        recorder.flush()
        return diverged_at is None

    def save_checkpoint(step: int) -> None:
        recorder.flush(force=True)
        progress = dict(done, step=step, images=done["images"] + segment_images,
                        train_time=done["train_time"] + segment_training_time(),
                        eval_time=done["eval_time"] + segment_eval, checkpoint_time=done["checkpoint_time"] + segment_ckpt)
        checkpoint.save(run_dir / checkpoint.FILENAME, cfg, step=step, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), batches=batches.state_dict(),
                        rng=checkpoint.rng_state({"noise": noise}),
                        probe=probe.state_dict() if probe is not None else {}, tables=recorder.positions(),
                        noisy_eval=noisy_eval.state_dict() if noisy_eval is not None else {},
                        progress=progress)

    try:  # on any error, close the TensorBoard writer: a sweep in one process must not leak it
        model.train()
        step = done["step"]
        with StopSignal() as stop:
            for step in range(done["step"] + 1, t.max_steps + 1):
                x, y = next(batches)
                measure_ics, measure_landscape = ics.due(step), landscape.due(step)
                probe_full = probe is not None and probe.fixed_batch is None and probe.wants_full_stats(step)
                measuring = measure_ics or measure_landscape  # these steps stay eager
                if graphed is not None and graphed.graph is None and not measuring and optimizer_ready(optimizer):
                    _capture(graphed, x, y)
                if graphed is not None and graphed.replays(probe_full) and not measuring:
                    buffer[len(pending)].copy_(graphed(x, y, full=probe_full))
                    if probe is not None:
                        probe.replayed(step, full=probe_full)
                else:
                    if measuring:
                        replay.mark_step_start()
                    with probe.observe(step) if probe is not None else nullcontext(), autocast(device, t.precision):
                        out = forward(x)
                    loss = task.loss(out, y)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()

                    def loss_at_current_weights(x=x, y=y):
                        with autocast(device, t.precision):
                            return task.loss(model(x), y)

                    if measure_landscape:
                        measured.add(step, landscape.measure(model, loss_at_current_weights, replay))
                    if measure_ics:
                        measured.add(step, ics.step(model, optimizer, loss_at_current_weights, replay))  # takes the step
                    else:
                        optimizer.step()
                    with torch.no_grad():
                        buffer[len(pending), 0] = loss.detach()
                        if task.accuracy is not None:
                            buffer[len(pending), 1] = task.accuracy(out.detach(), y)
                    del out, loss  # free this step's autograd graph now (a CUDA graph capture needs that)
                if probe is not None:
                    probe.observe_fixed(model, step)  # no-op unless probe.batch=fixed
                pending.append(step)
                if on_step is not None:
                    on_step(step)
                segment_images += len(y)
                if step == steady_from and step < t.max_steps:  # one host sync per run, to start the clock
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    steady_mark = (segment_images, segment_training_time())
                last = step == t.max_steps
                checkpoint_now = last or (t.checkpoint_every and step % t.checkpoint_every == 0) or stop.received
                eval_now = step % t.eval_every == 0 or last
                # waiting costs nothing where evaluation or a checkpoint waits for the device anyway
                if (len(pending) == t.log_every or checkpoint_now or eval_now) and not flush(wait=checkpoint_now or eval_now):
                    status = "diverged"
                    log.warning("loss became non-finite at step %d; stopping", diverged_at)
                    break
                if eval_now:
                    eval_start = time.perf_counter()
                    done["last_test"] = list(evaluate(model, data, task, cfg.data.eval_batch_size, device, t.precision))
                    test_metrics = dict(zip(("test/loss", "test/acc"), ([v] for v in done["last_test"])))
                    if task.accuracy is None:
                        del test_metrics["test/acc"]
                    if noisy_eval is not None and noisy_eval.due(step, last):  # noisy nets: two more readings
                        readings = noisy_eval.measure(cfg.data.eval_batch_size)
                        done["last_noisy_modes"] = {mode: list(readings[mode]) for mode in NOISY_MODES}
                        for mode in NOISY_MODES:
                            test_metrics[f"test_{mode}/loss"], test_metrics[f"test_{mode}/acc"] = ([v] for v in readings[mode])
                    segment_eval += time.perf_counter() - eval_start
                    recorder.scalars([step], test_metrics)
                    log.info("step %d: train loss %.4f acc %.4f | test loss %.4f acc %.4f", step, *done["last_train"],
                             *done["last_test"])
                if checkpoint_now:
                    ckpt_start = time.perf_counter()
                    save_checkpoint(step)
                    segment_ckpt += time.perf_counter() - ckpt_start
                if stop.received:
                    status = "interrupted"
                    log.warning("signal %d: checkpointed at step %d; rerun the same command to resume", stop.received, step)
                    break
    except BaseException:
        recorder.abandon()
        raise
    readback.drain()  # a diverged run stops before its last copies were written
    if bar is not None:
        bar.close()

    train_time = done["train_time"] + segment_training_time()
    steady = None
    if steady_mark is not None and status == "completed":  # the end waited for the device (readback.drain)
        steady = (segment_images - steady_mark[0]) / max(segment_training_time() - steady_mark[1], 1e-9)
    summary = {
        "status": status,
        "steps": step,
        "max_steps": t.max_steps,
        "diverged_at": diverged_at,
        "final": {"train_loss": done["last_train"][0], "train_acc": done["last_train"][1],
                  "test_loss": done["last_test"][0], "test_acc": done["last_test"][1],
                  **{f"test_{stat}_{mode}": (done.get("last_noisy_modes") or {}).get(mode, [None, None])[i]
                     for mode in NOISY_MODES for i, stat in enumerate(("loss", "acc"))}},
        "wall_time_s": train_time + done["eval_time"] + segment_eval + done["checkpoint_time"] + segment_ckpt,
        "eval_time_s": done["eval_time"] + segment_eval,
        "checkpoint_time_s": done["checkpoint_time"] + segment_ckpt,
        "train_images_per_s": (done["images"] + segment_images) / max(train_time, 1e-9),  # training steps only
        "steady_images_per_s": steady,  # the same after step trainer.steady_after of this process (None if none)
        "resumed_from": done["step"] if state is not None else None,
        "device": str(device),
        "cuda_graph": graphed is not None and graphed.graph is not None,
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "lr": cfg.optim.lr,
    }
    hparams = {
        "model": cfg.model.name, "norm": cfg.model.norm, "depth": cfg.model.depth, "width": cfg.model.width,
        "lr": cfg.optim.lr, "batch_size": cfg.data.batch_size, "seed": cfg.seed, "data": cfg.data.name,
    }
    recorder.close(summary, hparams)
    return summary


def _capture(graphed: GraphedStep, x, y) -> None:
    """Capture the graphed steps. A failed capture leaves CUDA unusable for this process (the noise
    generator stays in capture mode, the graph's memory pool keeps growing): stop with one line."""
    try:
        graphed.capture(x, y)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        side = graphed.probe is not None and graphed.probe.cfg.side_stream
        raise UserError(f"CUDA graph capture failed ({type(e).__name__}: {first}); rerun with trainer.cuda_graph=off "
                        "(same numbers, slower)" + (" or probe.side_stream=false" if side else "") + " and please report it") from e


def _progress(t, initial: int = 0):
    if not t.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=t.max_steps, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0)
