"""Internal covariate shift, the paper's Definition 2.1 (Figure 3).

For layer i at step t, on the step's batch:

    G  = grad of the loss w.r.t. W_i at the current weights W^(t)            (the training gradient)
    G' = grad w.r.t. W_i after layers 1..i-1 took their step-t update,
         layers i, i+1, ... still at W^(t)

and we record ||G - G'||_2 and cos(G, G'). The update is the one the optimiser really applies:
``ICSProbe.step`` performs the training step itself (``optimizer.step()``), keeps W^(t) and W^(t+1),
and evaluates G' on the mixed weights inside ``Replay.isolated()`` (same noise, train-mode BN,
running statistics untouched), then leaves the model at W^(t+1). "Layer j's update" includes the
gamma and beta of its normalisation. Cost: one extra forward/backward per measured layer.

Both gradients are computed in fp32 whatever ``trainer.precision`` says: in a bf16 run the step
passes G in from an fp32 forward/backward at the same weights, batch and noise (``exact``), and the
closure runs without autocast, since an update below bf16's resolution would otherwise vanish.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import IcsConfig
from .replay import Replay


class ICSProbe:
    def __init__(self, cfg: IcsConfig):
        self.cfg = cfg

    def step(self, model, optimizer, loss_closure: Callable[[], torch.Tensor], replay: Replay,
             exact: dict | None = None) -> dict[str, torch.Tensor]:
        """Take the optimiser's step and return ||G - G'|| and cos(G, G') for each configured layer.
        ``exact``: G in the closure's arithmetic where training's own gradient is in another (bf16)."""
        owned = model.param_layers()
        grads = {i: (exact[model.weight_of(i)] if exact is not None else model.weight_of(i).grad).detach().clone()
                 for i in self.cfg.layers}
        before = [p.detach().clone() for _, p in owned]
        optimizer.step()  # the real training update
        after = [p.detach().clone() for _, p in owned]
        out: dict[str, torch.Tensor] = {}
        with replay.isolated():
            for i in self.cfg.layers:
                with torch.no_grad():
                    for (k, p), b, a in zip(owned, before, after):
                        p.copy_(a if k < i else b)
                replay.rewind()
                (g_shifted,) = torch.autograd.grad(loss_closure(), model.weight_of(i))
                g, gs = grads[i].double(), g_shifted.detach().double()
                out[f"ics/layer{i:02d}/l2_diff"] = (g - gs).norm()
                out[f"ics/layer{i:02d}/cosine"] = (g * gs).sum() / (g.norm() * gs.norm()).clamp_min(1e-300)
            with torch.no_grad():
                for (_, p), a in zip(owned, after):
                    p.copy_(a)
        return out
