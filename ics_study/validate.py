"""Checks of value ranges that types alone cannot express; each failure is one ``UserError`` line."""

from __future__ import annotations

from .config import CUDA_GRAPH_SETTINGS, TrainConfig, cuda_graph_setting
from .data import DATASETS
from .errors import UserError
from .models import ARCHS, NORMS, PLANS
from .models.blocks import POINTS as PROBE_POINTS
from .models.noise_stream import NOISE_RNGS
from .models.noisy_bn import GRANULARITIES


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, allowed))}")


def _positive(key: str, value, strict: bool = True) -> None:
    if value < 0 or (strict and value == 0):
        raise UserError(f"{key}={value} must be {'positive' if strict else 'zero or more'}")


def validate(cfg: TrainConfig) -> None:
    """Refuse, in one line, a config that cannot run as asked (before anything is built or written)."""
    _model(cfg.model)
    _data(cfg.data, cfg.model, cfg.optim)
    _trainer(cfg.trainer, cfg.optim)
    _measurements(cfg)
    _probe(cfg.probe)


def _model(m) -> None:
    _one_of("model.arch", m.arch, sorted(ARCHS))
    if m.arch == "vgg":
        _one_of("model.depth", m.depth, sorted(PLANS))
    elif m.depth < 2:
        raise UserError(f"model.depth={m.depth} must be at least 2")
    _one_of("model.norm", m.norm, sorted(NORMS))
    _positive("model.width", m.width)
    _positive("model.groups", m.groups)
    _positive("model.num_classes", m.num_classes)
    if m.noise.n_sigma < 1:
        raise UserError(f"model.noise.n_sigma={m.noise.n_sigma} must be >= 1 (sigma_j ~ U(1, n_sigma))")
    for key in ("n_mu", "r_mu", "r_sigma"):
        _positive(f"model.noise.{key}", getattr(m.noise, key), strict=False)
    _one_of("model.noise.rng", m.noise.rng, NOISE_RNGS)
    _positive("model.noise.strength", m.noise.strength, strict=False)
    _one_of("model.noise.granularity", m.noise.granularity, GRANULARITIES)
    _positive("model.noise.redraw_every", m.noise.redraw_every, strict=False)
    _positive("model.features", m.features)
    _positive("model.bn_eps", m.bn_eps)
    _positive("model.lp.eps", m.lp.eps)
    for key, value in (("model.bn_momentum", m.bn_momentum), ("model.lp.momentum", m.lp.momentum)):
        if not 0 <= value <= 1:
            raise UserError(f"{key}={value} must be in [0, 1] (the weight of a new batch in the running statistics)")
    if any(h <= 0 for h in m.head_hidden):
        raise UserError(f"model.head_hidden={list(m.head_hidden)} must list positive layer widths")


def _data(d, m, o) -> None:
    _one_of("data.name", d.name, DATASETS)
    for key in ("num_train", "num_test", "image_size", "features"):
        _positive(f"data.{key}", getattr(d, key))
    _positive("data.noise_std", d.noise_std, strict=False)
    _positive("data.augment.crop_padding", d.augment.crop_padding, strict=False)
    _positive("data.batch_size", d.batch_size)
    _positive("data.eval_batch_size", d.eval_batch_size)
    if d.name == "cifar10" and not d.root:
        raise UserError("data.root is empty: set it to the folder that holds cifar-10-batches-py/")
    _one_of("data.loss_reduction", d.loss_reduction, ["sum", "mean"])
    if (m.arch == "dln") != (d.name == "linear_regression"):
        raise UserError("model=dln goes with data=linear_regression (and only with it); use experiment=dln")
    if m.arch == "dln":
        _dln_lr(o.lr, d.loss_reduction, d.num_train)
    if m.arch == "dln" and m.features != d.features:
        raise UserError(f"model.features={m.features} must equal data.features={d.features}")


def _trainer(t, o) -> None:
    _one_of("optim.name", o.name, ["sgd"])
    _positive("optim.lr", o.lr)
    _positive("optim.momentum", o.momentum, strict=False)
    _positive("optim.weight_decay", o.weight_decay, strict=False)
    _positive("trainer.max_steps", t.max_steps)
    _positive("trainer.eval_every", t.eval_every)
    _positive("trainer.log_every", t.log_every)
    _positive("trainer.threads", t.threads, strict=False)
    _positive("trainer.steady_after", t.steady_after)
    _positive("trainer.checkpoint_every", t.checkpoint_every, strict=False)
    _positive("trainer.lock_wait_s", t.lock_wait_s, strict=False)
    _one_of("trainer.precision", t.precision, ["fp32", "bf16"])
    _one_of("trainer.compile_mode", t.compile_mode, ["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    _one_of("trainer.cuda_graph", cuda_graph_setting(t.cuda_graph), CUDA_GRAPH_SETTINGS)


def _measurements(cfg: TrainConfig) -> None:
    _positive("ics.every", cfg.ics.every)
    _positive("landscape.every", cfg.landscape.every)
    _positive("sharpness.every", cfg.sharpness.every)
    _positive("sharpness.iterations", cfg.sharpness.iterations)
    _positive("sharpness.tol", cfg.sharpness.tol, strict=False)
    _positive("sharpness.trace_samples", cfg.sharpness.trace_samples, strict=False)
    if cfg.landscape.eta_range:
        lo_hi = cfg.landscape.eta_range
        if len(lo_hi) != 2 or not 0 < lo_hi[0] < lo_hi[1]:
            raise UserError(f"landscape.eta_range={list(lo_hi)} must be [lo, hi] with 0 < lo < hi")
        _positive("landscape.eta_points", cfg.landscape.eta_points)
    elif not cfg.landscape.eta_scales or min(cfg.landscape.eta_scales) <= 0:
        raise UserError("landscape.eta_scales must be a non-empty list of positive numbers (or set landscape.eta_range)")
    _positive("eval.recalibration_batches", cfg.eval.recalibration_batches)
    _positive("eval.noisy_modes_every", cfg.eval.noisy_modes_every, strict=False)
    if cfg.eval.noisy_modes_every % cfg.trainer.eval_every:
        raise UserError(f"eval.noisy_modes_every={cfg.eval.noisy_modes_every} must be a multiple of "
                        f"trainer.eval_every={cfg.trainer.eval_every} (or 0: the last evaluation only)")


def _probe(p) -> None:
    if not p.points or len(set(p.points)) != len(p.points):
        raise UserError(f"probe.points={list(p.points)} must name one or more distinct points, e.g. [pre_relu, pre_norm]")
    for point in p.points:
        _one_of("probe.points", point, list(PROBE_POINTS))
    _one_of("probe.batch", p.batch, ["train", "fixed"])
    _one_of("probe.unit", p.unit, ["channel", "position"])
    _positive("probe.channels_per_layer", p.channels_per_layer)
    _positive("probe.every", p.every)
    _positive("probe.hist_bins", p.hist_bins)
    _positive("probe.summary_sample", p.summary_sample)
    _positive("probe.tb_every", p.tb_every)
    _positive("probe.tb_scalar_channels", p.tb_scalar_channels, strict=False)


# The deep linear network diverges within a few steps once lr on the mean loss reaches ~1e-2 (measured:
# lr 1e-5 on the summed loss of 1000 samples diverged at step 12, 1e-6 trains); the paper uses 1e-6, 1e-7
DLN_MAX_MEAN_LR = 1e-2


def _dln_lr(lr: float, reduction: str, num_train: int) -> None:
    mean_lr = lr * (num_train if reduction == "sum" else 1)
    if mean_lr >= DLN_MAX_MEAN_LR:
        on = f"the summed l2 loss (data.loss_reduction=sum over {num_train} samples: lr {mean_lr:g} on the mean)" \
            if reduction == "sum" else "the mean l2 loss"
        raise UserError(f"model=dln with optim.lr={lr:g} on {on} diverges within a few steps; the paper uses lr 1e-6 "
                        "and 1e-7 on the summed loss: use experiment=dln, or set optim.lr=1e-6")


def validate_layers(cfg: TrainConfig, num_layers: int) -> None:
    """Layer numbers in the config exist in the built network (#1..#num_layers)."""
    if cfg.ics.enabled:
        bad = [k for k in cfg.ics.layers if not 1 <= k <= num_layers]
        if bad or not cfg.ics.layers:
            raise UserError(f"ics.layers={list(cfg.ics.layers)}: this network has layers #1..#{num_layers}")
