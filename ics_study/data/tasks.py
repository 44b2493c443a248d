"""What is being minimised: the loss (and accuracy, if any) of a dataset's task.

Classification (CIFAR-10, synthetic): cross-entropy and top-1 accuracy. Regression (the deep linear
network): the l2 loss 0.5 * sum ||f(x) - y||^2 over the batch (``data.loss_reduction=sum`` [I]) or
its per-sample mean; there is no accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import DataConfig


@dataclass(frozen=True)
class Task:
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    accuracy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # summed over a batch, for evaluation


def _l2(reduction: str):
    def loss(out, y):
        per_sample = 0.5 * (out.float() - y).square().sum(1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    return loss


def task_for(cfg: DataConfig) -> Task:
    if cfg.name == "linear_regression":
        return Task(loss=_l2(cfg.loss_reduction), accuracy=None, loss_sum=_l2("sum"))
    return Task(
        loss=lambda out, y: F.cross_entropy(out.float(), y),
        accuracy=lambda out, y: (out.argmax(1) == y).float().mean(),
        loss_sum=lambda out, y: F.cross_entropy(out.float(), y, reduction="sum"),
    )
