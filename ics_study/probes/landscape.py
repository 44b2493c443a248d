"""Loss landscape along the gradient (the paper's Figure 4).

At a step with full-parameter gradient g (on the step's batch) and for every eta on the grid
(``landscape.eta_scales`` x lr, or ``eta_range`` log-spaced), evaluate at w - eta g, on the same batch
and with the same noise:

    loss range               min and max over eta of L(w - eta g)
    gradient predictiveness  min and max over eta of ||grad L(w) - grad L(w - eta g)||
    effective beta-smoothness  max over eta of ||grad L(w) - grad L(w - eta g)|| / ||eta g||

Weights, gradients, BN buffers and every random state are restored afterwards, so training goes on
exactly as without the probe. Cost: one forward/backward per eta.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..config import LandscapeConfig
from .replay import Replay


def eta_grid(cfg: LandscapeConfig, lr: float) -> list[float]:
    if cfg.eta_range:
        lo, hi = cfg.eta_range
        return (np.geomspace(lo, hi, cfg.eta_points) * lr).tolist()
    return [s * lr for s in cfg.eta_scales]


class LandscapeProbe:
    def __init__(self, cfg: LandscapeConfig, lr: float):
        self.cfg, self.etas = cfg, eta_grid(cfg, lr)

    def measure(self, model, loss_closure: Callable[[], torch.Tensor], replay: Replay,
                exact: dict | None = None) -> dict[str, torch.Tensor]:
        """Call after backward and before the optimiser step: p.grad holds g (``exact``: g in the
        closure's arithmetic, where training's own gradient is in another, bf16)."""
        params = [p for p in model.parameters() if p.grad is not None]
        w = [p.detach().clone() for p in params]
        g = [(exact[p] if exact is not None else p.grad).detach().clone() for p in params]
        g_norm = torch.sqrt(sum(x.double().square().sum() for x in g))
        losses, diffs, betas = [], [], []
        with replay.isolated():
            for eta in self.etas:
                with torch.no_grad():
                    for p, wi, gi in zip(params, w, g):
                        p.copy_(wi - eta * gi)
                replay.rewind()
                loss = loss_closure()
                grads = torch.autograd.grad(loss, params)
                diff = torch.sqrt(sum((gi.double() - ge.double()).square().sum() for gi, ge in zip(g, grads)))
                losses.append(loss.detach().double())
                diffs.append(diff)
                betas.append(diff / (eta * g_norm).clamp_min(1e-300))
            with torch.no_grad():
                for p, wi in zip(params, w):
                    p.copy_(wi)
        losses, diffs = torch.stack(losses), torch.stack(diffs)
        return {
            "landscape/loss_min": losses.min(), "landscape/loss_max": losses.max(),
            "landscape/gradpred_min": diffs.min(), "landscape/gradpred_max": diffs.max(),
            "landscape/beta_smoothness": torch.stack(betas).max(), "landscape/grad_norm": g_norm,
        }
