"""The loss's curvature at the current weights, from Hessian-vector products (issue 30's probe).

Three numbers for a batch loss L(w) at weights w, with H = d^2 L / dw^2 and g = dL/dw:

- the top eigenvalue of H (the sharpness of Cohen et al. 2021, "the edge of stability"), by Lanczos
  with full reorthogonalisation: ``iterations`` products H v at most, stopping once the largest
  Ritz value moves by less than ``tol`` (relative) between iterations. Lanczos and not power
  iteration: power iteration finds the eigenvalue of largest magnitude, and a net's Hessian can
  have a negative one larger than its top (early in training, or without BN); the largest Ritz
  value of a Krylov space approaches the largest algebraic eigenvalue. A warm start (the previous
  measurement's top vector) usually halves the iterations;
- the curvature along the gradient, g^T H g / ||g||^2 (the "batch sharpness" along the step);
- the trace of H by Hutchinson's estimator, mean over ``samples`` Rademacher vectors z of z^T H z
  (unbiased; its spread is reported with it).

Each H v is one extra backward through the graph of g (double backward): about the cost of two
training steps. Everything here is a pure function of the loss closure and the parameters: it runs
no optimiser and touches no buffer it does not restore (the caller runs it inside
``Replay.isolated``, as ICS and the landscape do, so BN stays in training mode on the step's batch
and its running statistics, the noise and the random streams are left as they were).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..config import SharpnessConfig
from ..models.norms import twice_differentiable
from .replay import Replay

Params = Sequence[torch.Tensor]


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _split(v: torch.Tensor, like: Params) -> list[torch.Tensor]:
    out, at = [], 0
    for p in like:
        out.append(v[at : at + p.numel()].view_as(p))
        at += p.numel()
    return out


class HessianVector:
    """H v products for the loss of ``loss_fn()`` at ``params``, in the parameters' dtype: the
    gradient's graph is built once and differentiated again for every v."""

    def __init__(self, loss_fn: Callable[[], torch.Tensor], params: Params):
        self.params = list(params)
        loss = loss_fn()
        self.grad = torch.autograd.grad(loss, self.params, create_graph=True)
        self.flat_grad = _flat([g.detach() for g in self.grad])
        self.products = 0  # H v products taken (the cost, in backward passes)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.products += 1
        hv = torch.autograd.grad(self.grad, self.params, _split(v, self.params), retain_graph=True)
        return _flat(hv)


@dataclass
class TopEigen:
    value: float  # the largest Ritz value: the estimate of H's largest (algebraic) eigenvalue
    vector: torch.Tensor  # its Ritz vector, unit length (the next measurement's warm start)
    iterations: int  # H v products taken
    converged: bool  # the value moved by less than tol (relative) at the last iteration


def top_eigenvalue(hvp: HessianVector, iterations: int = 20, tol: float = 1e-3,
                   start: torch.Tensor | None = None, generator: torch.Generator | None = None) -> TopEigen:
    """Lanczos with full reorthogonalisation from ``start`` (else a random unit vector drawn from
    ``generator``), at most ``iterations`` products, stopping at a relative change below ``tol``."""
    n = hvp.flat_grad.numel()
    like = hvp.flat_grad
    q = start.to(like) if start is not None else torch.randn(n, generator=generator, dtype=like.dtype).to(like.device)
    q = q / q.norm()
    basis, alphas, betas = [q], [], []
    value, previous, top = float("nan"), None, q
    for k in range(min(iterations, n)):
        w = hvp(basis[-1])
        alphas.append(torch.dot(w, basis[-1]))
        stacked = torch.stack(basis)
        w = w - stacked.T @ (stacked @ w)  # full reorthogonalisation (twice is enough in practice)
        w = w - stacked.T @ (stacked @ w)
        t = torch.diag(torch.stack(alphas))
        if betas:
            off = torch.stack(betas)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(t)
        value = float(evals[-1])
        top = stacked.T @ evecs[:, -1]
        beta = w.norm()
        if previous is not None and abs(value - previous) <= tol * max(abs(value), 1e-12):
            return TopEigen(value, top / top.norm(), k + 1, True)
        if float(beta) <= 1e-10 * max(abs(value), 1.0):  # an invariant subspace: the values are exact
            return TopEigen(value, top / top.norm(), k + 1, True)
        previous = value
        betas.append(beta)
        basis.append(w / beta)
    return TopEigen(value, top / top.norm(), len(alphas), False)


def gradient_curvature(hvp: HessianVector) -> float:
    """g^T H g / ||g||^2: the curvature of the loss along the gradient (0 where the gradient is)."""
    g = hvp.flat_grad
    norm2 = torch.dot(g, g)
    return float(torch.dot(g, hvp(g)) / norm2) if float(norm2) > 0 else 0.0


def hutchinson_trace(hvp: HessianVector, samples: int, generator: torch.Generator | None = None) -> tuple[float, float]:
    """tr(H) estimated as the mean of z^T H z over ``samples`` Rademacher vectors z, and the
    standard error of that mean."""
    like = hvp.flat_grad
    values = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (like.numel(),), generator=generator) * 2 - 1).to(like)
        values.append(float(torch.dot(z, hvp(z))))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / len(values) ** 0.5) if len(values) > 1 else float("nan")


class SharpnessProbe:
    """``sharpness.*`` at a step, on the step's batch at the weights before its update (where the
    landscape measures), with the step's own noise and buffers (``Replay``), in the closure's
    arithmetic (fp32). Its state is the last top vector, the next measurement's warm start."""

    def __init__(self, cfg: SharpnessConfig, seed: int):
        self.cfg = cfg
        self.random = torch.Generator().manual_seed(seed * 1000 + 12)  # the first start, the trace's vectors
        self.vector: torch.Tensor | None = None

    def measure(self, model, loss_closure: Callable[[], torch.Tensor], replay: Replay) -> dict[str, torch.Tensor]:
        """Call after backward and before the optimiser step (the parameters with a gradient are
        those measured); leaves weights, gradients, buffers and random streams as they were."""
        params = [p for p in model.parameters() if p.grad is not None]
        with replay.isolated():
            replay.rewind()
            with twice_differentiable():
                hvp = HessianVector(loss_closure, params)
            start = self.vector if self.vector is not None and self.vector.numel() == hvp.flat_grad.numel() else None
            top = top_eigenvalue(hvp, self.cfg.iterations, self.cfg.tol, start, self.random)
            out = {"sharpness/top_eigenvalue": top.value, "sharpness/iterations": top.iterations,
                   "sharpness/converged": float(top.converged), "sharpness/gradient_curvature": gradient_curvature(hvp)}
            if self.cfg.trace_samples:
                out["sharpness/trace"], out["sharpness/trace_stderr"] = hutchinson_trace(
                    hvp, self.cfg.trace_samples, self.random)
            del hvp  # the gradient's graph: a forward's activations, freed before training goes on
        self.vector = top.vector.detach().cpu()
        return {k: torch.tensor(float(v), dtype=torch.float64) for k, v in out.items()}

    def state_dict(self) -> dict:
        return {"vector": self.vector, "random": self.random.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.vector = state.get("vector")
        if state.get("random") is not None:
            self.random.set_state(state["random"])
