"""``train(cfg, run_dir) -> summary``: the training loop. No Hydra here; the CLI calls this.

Protocol (``../shared/docs/PROTOCOL.md``): SGD on cross-entropy, batch 128, constant lr, a fixed
number of steps. Step t means: forward/backward on batch t, then update t. The train loss and
accuracy of step t are those of batch t before its update; an evaluation at step t sees the
weights after update t.

Speed rules: the dataset lives on the device; per-step metrics are accumulated in a device buffer
and read back once every ``trainer.log_every`` steps (the only host sync outside evaluation);
probes keep their own device buffers and are flushed at the same moments.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import build_data
from .models import build_model, set_noise_generator
from .probes import ActivationProbe, ICSProbe, LandscapeProbe, PendingScalars, Replay
from .records import Recorder
from .tasks import Task, task_for
from .validate import validate, validate_layers

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import UserError

        raise UserError(f"trainer.device={name} but no CUDA device is visible; use trainer.device=cpu or auto")
    return device


def seeded_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """One generator per source of randomness, so that adding a probe never shifts another stream."""
    noise = torch.Generator(device=device)
    noise.manual_seed(seed * 1000 + 1)
    return {"data": torch.Generator().manual_seed(seed * 1000 + 2), "noise": noise}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def evaluate(model, data, task: Task, batch_size: int, device, precision: str) -> tuple[float, float]:
    """Mean loss and accuracy (NaN without one) over the whole test set, in evaluation mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    for x, y in data.test_batches(batch_size):
        with autocast(device, precision):
            out = model(x)
        loss_sum += task.loss_sum(out, y)
        if task.accuracy is not None:
            correct += task.accuracy(out, y) * len(y)
    model.train()
    n = len(data.y_test)
    return loss_sum.item() / n, (correct.item() / n if task.accuracy is not None else math.nan)


def train(cfg: TrainConfig, run_dir: str | Path) -> dict:
    validate(cfg)
    run_dir = Path(run_dir)
    t = cfg.trainer
    device = pick_device(t.device)
    torch.set_num_threads(t.threads or torch.get_num_threads())
    if t.deterministic:
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic

    data = build_data(cfg.data, cfg.seed, device)
    task = task_for(cfg.data)
    torch.manual_seed(cfg.seed)  # weights
    model = build_model(cfg.model).to(device)
    validate_layers(cfg, len(model.blocks))
    if t.channels_last and cfg.data.name != "linear_regression":
        model = model.to(memory_format=torch.channels_last)
        data.channels_last = True
    gens = seeded_generators(cfg.seed, device)
    set_noise_generator(model, gens["noise"])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    batches = data.train_batches(cfg.data.batch_size, gens["data"], cfg.data.drop_last, cfg.data.augment)

    recorder = Recorder(run_dir, cfg.logger)
    recorder.config(dataclasses.asdict(cfg))
    recorder.status("running", steps=0)
    probe = ActivationProbe(model, cfg.probe, cfg.seed, data) if cfg.probe.enabled else None
    if probe is not None:
        recorder.layout(probe.tensorboard_layout())
    # compile after the probe's hooks are registered; measurements use the eager module
    forward = torch.compile(model, mode=t.compile_mode, dynamic=False) if t.compile else model
    ics = ICSProbe(cfg.ics)
    landscape = LandscapeProbe(cfg.landscape, cfg.optim.lr)
    replay = Replay(model, gens["noise"])
    measured = PendingScalars()  # ICS and landscape values, read back at each flush

    buffer = torch.full((t.log_every, 2), math.nan, device=device)  # (loss, accuracy) of each pending step
    pending: list[int] = []
    status, diverged_at, last_train = "completed", None, (math.nan, math.nan)
    test_loss = test_acc = None
    bar = _progress(t)
    start = time.perf_counter()
    images_seen, eval_time = 0, 0.0

    def flush() -> bool:
        """Read back pending metrics; returns False if training diverged."""
        nonlocal diverged_at, last_train
        host = buffer[: len(pending)].cpu().numpy()
        steps = np.asarray(pending)
        train_metrics = {"train/loss": host[:, 0], "train/acc": host[:, 1]}
        if task.accuracy is None:
            del train_metrics["train/acc"]
        recorder.scalars(steps, train_metrics)
        if probe is not None:
            probe.flush(recorder)
        measured.flush(recorder)
        recorder.flush()
        elapsed = time.perf_counter() - start
        last_train = (float(host[-1, 0]), float(host[-1, 1]))
        if bar is not None:
            bar.update(len(pending))
            rate = images_seen / max(elapsed - eval_time, 1e-9)
            bar.set_postfix(loss=f"{last_train[0]:.3f}", acc=f"{last_train[1]:.3f}", img_s=f"{rate:.0f}")
        bad = ~np.isfinite(host[:, 0])
        if bad.any():
            diverged_at = int(steps[bad.argmax()])
        pending.clear()
        return diverged_at is None

    model.train()
    for step in range(1, t.max_steps + 1):
        x, y = next(batches)
        measure_ics, measure_landscape = ics.due(step), landscape.due(step)
        if measure_ics or measure_landscape:
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
        if probe is not None:
            probe.observe_fixed(model, step)  # no-op unless probe.batch=fixed
        with torch.no_grad():
            buffer[len(pending), 0] = loss.detach()
            if task.accuracy is not None:
                buffer[len(pending), 1] = task.accuracy(out.detach(), y)
        pending.append(step)
        images_seen += len(y)
        last = step == t.max_steps
        if (len(pending) == t.log_every or last) and not flush():
            status = "diverged"
            log.warning("loss became non-finite at step %d; stopping", diverged_at)
            break
        if step % t.eval_every == 0 or last:
            eval_start = time.perf_counter()
            test_loss, test_acc = evaluate(model, data, task, cfg.data.eval_batch_size, device, t.precision)
            eval_time += time.perf_counter() - eval_start
            test_metrics = {"test/loss": [test_loss], "test/acc": [test_acc]}
            if task.accuracy is None:
                del test_metrics["test/acc"]
            recorder.scalars([step], test_metrics)
            log.info("step %d: train loss %.4f acc %.4f | test loss %.4f acc %.4f", step, *last_train, test_loss, test_acc)
    else:
        step = t.max_steps
    wall = time.perf_counter() - start
    if bar is not None:
        bar.close()

    summary = {
        "status": status,
        "steps": step,
        "max_steps": t.max_steps,
        "diverged_at": diverged_at,
        "final": {"train_loss": last_train[0], "train_acc": last_train[1], "test_loss": test_loss, "test_acc": test_acc},
        "wall_time_s": wall,
        "eval_time_s": eval_time,
        "train_images_per_s": images_seen / (wall - eval_time),  # training steps only
        "device": str(device),
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


def _progress(t):
    if not t.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=t.max_steps, unit="step", dynamic_ncols=True, mininterval=1.0)
