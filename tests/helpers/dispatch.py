"""Counting the operations that code dispatches, by a rule: for tests of what would slow a GPU but
cannot be timed on a CPU (mixed memory layouts, host syncs)."""

from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class CountOps(TorchDispatchMode):
    """Inside ``with CountOps(rule) as seen:``, ``seen.found`` counts ``{name(op): calls}`` of every
    operation for which ``rule(op, tensors)`` holds (``tensors``: the tensors among its arguments)."""

    def __init__(self, rule, name=str):
        super().__init__()
        self.rule, self.name, self.found = rule, name, collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        if self.rule(func, tensors):
            self.found[self.name(func)] += 1
        return func(*args, **(kwargs or {}))
