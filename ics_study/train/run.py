"""A run: everything one training run owns -- model, optimiser, batch and noise streams, probes,
recorder, clock, step -- and what it does between steps: flush, evaluate, checkpoint, finish.

``Run(cfg, run_dir, device, state)`` builds it; with ``state`` (a checkpoint) it continues exactly
where that run stopped, through ``load_state_dict``: resuming is loading, not a second code path.
``state_dict()`` is what the checkpoint stores. A run knows nothing of Hydra; several runs could be
stepped in one process, each with its own streams, graph and recorder.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import build_data
from ..data.tasks import task_for
from ..errors import UserError
from ..models import build_model, set_noise_generator
from ..models.noise_stream import CounterStream, Stream, noise_stream
from ..probes import ActivationProbe, SharpnessProbe
from ..recording.recorder import Recorder
from ..validate import validate_layers
from . import checkpoint
from .clock import Clock
from .evaluation import NOISY_MODES, NoisyEvaluation, evaluate
from .graphed_step import wanted as graph_wanted
from .precision import bf16_through_fp32
from .process import hardware
from .readback import ReadBack
from .schedule import tensorboard_rows
from .step import TrainStep

log = logging.getLogger("ics_study.train")


def noise_generator(cfg: TrainConfig, device: torch.device) -> Stream:
    """The noisy BN's own stream, so that adding a probe never shifts another source of randomness."""
    stream = noise_stream(cfg.model.noise.rng, cfg.seed * 1000 + 1, device)
    t = cfg.trainer
    if isinstance(stream, CounterStream) and graph_wanted(t.cuda_graph, device, t.compile_mode if t.compile else None):
        raise UserError("model.noise.rng=counter keys each draw by a host-side counter, which a CUDA graph would "
                        "freeze at its capture: use model.noise.rng=auto (torch's generator on a GPU) or "
                        "trainer.cuda_graph=off")
    return stream


class Run:
    def __init__(self, cfg: TrainConfig, run_dir: Path, device: torch.device, state: dict | None = None,
                 graphed_step: type | None = None):
        self.cfg, self.run_dir, self.device = cfg, Path(run_dir), device
        t = cfg.trainer
        # --- what has state, built in a fixed order (the weights draw from the global seed) ------------
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model).to(device)
        validate_layers(cfg, len(self.model.blocks))  # before the data: a wrong layer number fails at once
        self.data = build_data(cfg.data, cfg.seed, device)
        self.task = task_for(cfg.data)
        if t.channels_last and cfg.data.name != "linear_regression":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.data.channels_last = True
        self.noise = noise_generator(cfg, device)
        self.uses_noise = set_noise_generator(self.model, self.noise) > 0
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay)
        self.batches = self.data.train_batches(cfg.data.batch_size, cfg.seed, cfg.data.drop_last, cfg.data.augment)
        self.probe = ActivationProbe(self.model, cfg.probe, cfg.seed, self.data,
                                     tensorboard_rows(cfg.probe)) if cfg.probe.enabled else None
        self.sharpness = SharpnessProbe(cfg.sharpness, cfg.seed) if cfg.sharpness.enabled else None
        self.noisy_eval = NoisyEvaluation.build(self.model, self.data, self.task, cfg.eval, cfg.seed, device,
                                                t.precision, cfg.data.batch_size)
        self.clock = Clock(device)
        self.step, self.resumed_from, self.tables_at = 0, None, None
        self.last_train, self.last_test, self.last_noisy_modes = [math.nan, math.nan], [None, None], {}
        self.diverged_at: int | None = None
        if state is not None:
            self.load_state_dict(state)

        # --- recording, then what must follow the weights (the probes' set-up, compilation, the step) --
        self.recorder = Recorder(self.run_dir, cfg.logger, resume=(self.step, self.tables_at) if state else None)
        self.recorder.config(dataclasses.asdict(cfg))
        self.recorder.status("running", steps=self.step)
        if self.probe is not None and state is None:
            self.recorder.layout(self.probe.tensorboard_layout())
        if self.probe is not None:  # its one-off set-up, outside compiled code and graph captures
            self.probe.prepare(self.model, self.data.normalize(self.data.x_train[: cfg.data.batch_size]))
        # compile after the probe's hooks are registered; measurements use the eager module
        self.forward = torch.compile(self.model, mode=t.compile_mode, dynamic=False) if t.compile else self.model
        self.train_step = TrainStep(self, graphed_step)
        self.metrics = torch.full((t.log_every, 2), math.nan, device=device)  # (loss, accuracy) of pending steps
        self.pending: list[int] = []
        self.readback = ReadBack(device)
        self.bar = _progress(t, self.step)
        self.model.train()

    # --- checkpoint ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly here (``checkpoint.save`` writes it)."""
        progress = {"step": self.step, **self.clock.state_dict(), "last_train": self.last_train,
                    "last_test": self.last_test, "last_noisy_modes": self.last_noisy_modes}
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "batches": self.batches.state_dict(), "rng": checkpoint.rng_state({"noise": self.noise}),
                "probe": self.probe.state_dict() if self.probe is not None else {},
                "tables": self.recorder.positions(),
                "noisy_eval": self.noisy_eval.state_dict() if self.noisy_eval is not None else {},
                "sharpness": self.sharpness.state_dict() if self.sharpness is not None else {},
                "progress": progress}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        checkpoint.restore_rng(state["rng"], {"noise": self.noise})
        if self.probe is not None:
            self.probe.load_state_dict(state["probe"])
        if self.noisy_eval is not None and state.get("noisy_eval"):
            self.noisy_eval.load_state_dict(state["noisy_eval"])
        if self.sharpness is not None and state.get("sharpness"):
            self.sharpness.load_state_dict(state["sharpness"])
        progress = state["progress"]
        self.clock.load_state_dict(progress)
        self.step = self.resumed_from = progress["step"]
        self.last_train, self.last_test = progress["last_train"], progress["last_test"]
        self.last_noisy_modes = progress.get("last_noisy_modes", {})
        self.tables_at = state["tables"]

    def save_checkpoint(self) -> None:
        with self.clock.pause("checkpoint"):
            self.recorder.flush(force=True)
            checkpoint.save(self.run_dir / checkpoint.FILENAME, self.cfg, **self.state_dict())

    # --- between steps ---------------------------------------------------------------------------------
    def train(self, step: int, x: torch.Tensor, y: torch.Tensor, due) -> None:
        """Training step ``step`` on (x, y); its loss and accuracy wait on the device until a flush."""
        self.train_step(step, x, y, due, self.metrics[len(self.pending)])
        if self.probe is not None:
            self.probe.observe_fixed(self.model, step, due.full_stats)  # no-op unless probe.batch=fixed
        self.pending.append(step)
        self.step = step
        self.clock.count(len(y))

    def flush(self, wait: bool) -> bool:
        """Start copying pending metrics and probe records to the host; write whatever has arrived
        (everything, if ``wait``: a host sync). Returns False once training is known to have diverged."""
        steps = np.asarray(self.pending)
        self.readback.start(self.metrics[: len(self.pending)], lambda host: self._write_train(steps, host))
        for source in (self.probe, self.train_step.measured):
            collected = source.collect(self.recorder) if source is not None else None
            if collected is not None:
                self.readback.start(*collected)
        self.pending.clear()
        self.readback.drain() if wait else self.readback.poll()
        self.recorder.flush()
        return self.diverged_at is None

    def _write_train(self, steps: np.ndarray, host: np.ndarray) -> None:
        values = {"train/loss": host[:, 0], "train/acc": host[:, 1]}
        if self.task.accuracy is None:
            del values["train/acc"]
        self.recorder.scalars(steps, values)
        self.last_train = [float(host[-1, 0]), float(host[-1, 1])]
        if self.bar is not None:
            self.bar.update(len(steps))
            self.bar.set_postfix(loss=f"{host[-1, 0]:.3f}", acc=f"{host[-1, 1]:.3f}", img_s=f"{self.clock.rate():.0f}")
        bad = ~np.isfinite(host[:, 0])
        if bad.any() and self.diverged_at is None:
            self.diverged_at = int(steps[bad.argmax()])

    def evaluate(self, step: int, noisy_readings: bool) -> None:
        """Test loss and accuracy at the weights after update ``step`` (a host sync: it waits for them),
        and a noisy net's two more readings if ``noisy_readings``."""
        cfg = self.cfg
        with self.clock.pause("eval"):
            self.last_test = list(evaluate(self.model, self.data, self.task, cfg.data.eval_batch_size, self.device,
                                           cfg.trainer.precision, cfg.seed))
            values = dict(zip(("test/loss", "test/acc"), ([v] for v in self.last_test)))
            if self.task.accuracy is None:
                del values["test/acc"]
            if self.noisy_eval is not None and noisy_readings:
                readings = self.noisy_eval.measure(cfg.data.eval_batch_size)
                self.last_noisy_modes = {mode: list(readings[mode]) for mode in NOISY_MODES}
                for mode in NOISY_MODES:
                    values[f"test_{mode}/loss"], values[f"test_{mode}/acc"] = ([v] for v in readings[mode])
        self.recorder.scalars([step], values)
        log.info("step %d: train loss %.4f acc %.4f | test loss %.4f acc %.4f", step, *self.last_train, *self.last_test)

    # --- the end -----------------------------------------------------------------------------------------
    def abandon(self) -> None:
        """After an error: close what is open, write nothing more."""
        self.recorder.abandon()

    def finish(self, status: str) -> dict:
        """Write what is still on its way, the summary, the hparams and the final status."""
        self.readback.drain()  # a diverged run stops before its last copies were written
        if self.bar is not None:
            self.bar.close()
        cfg, device = self.cfg, self.device
        summary = {
            "status": status,
            "steps": self.step,
            "max_steps": cfg.trainer.max_steps,
            "diverged_at": self.diverged_at,
            "final": {"train_loss": self.last_train[0], "train_acc": self.last_train[1],
                      "test_loss": self.last_test[0], "test_acc": self.last_test[1],
                      **{f"test_{stat}_{mode}": (self.last_noisy_modes or {}).get(mode, [None, None])[i]
                         for mode in NOISY_MODES for i, stat in enumerate(("loss", "acc"))}},
            **self.clock.summary(completed=status == "completed"),
            "resumed_from": self.resumed_from,
            "device": str(device),
            "hardware": hardware(device),  # the wall times' machine: lscpu's model name with family/model, or the GPU
            "cuda_graph": self.train_step.uses_graph,
            "bf16_through_fp32": bf16_through_fp32(device, cfg.trainer.precision),  # provenance: which bf16 kernels
            "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "model": cfg.model.name,
            "seed": cfg.seed,
            "lr": cfg.optim.lr,
        }
        hparams = {"model": cfg.model.name, "norm": cfg.model.norm, "depth": cfg.model.depth, "width": cfg.model.width,
                   "lr": cfg.optim.lr, "batch_size": cfg.data.batch_size, "seed": cfg.seed, "data": cfg.data.name}
        self.recorder.close(summary, hparams)
        return summary


def _progress(t, initial: int = 0):
    if not t.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=t.max_steps, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0)
