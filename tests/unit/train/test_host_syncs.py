"""No host sync per training step.

On a GPU, reading a value back (``loss.item()``, ``if tensor:``) or an operation whose output size
depends on the data (``nonzero``, boolean indexing, ``unique``, ``bincount``) makes the host wait
for every queued kernel: the GPU then idles while Python prepares the next step. The loop may do that
at a flush, an evaluation, a checkpoint or once per run, never per step. The CPU cannot see the
wait, but it can see the operations that cause it: this counts them under a dispatch mode in runs
of 10 and 20 steps with every kind of step in both (probe histograms, ICS and landscape every 5
steps; one read-back, evaluation and checkpoint at the end), eager and around CUDA-graph replays
(with ``test_cuda_graph``'s CPU stand-in for the graph). The counts must not grow with the steps.
"""

from __future__ import annotations

import pytest
import torch

from ics_study.train import train
from tests.helpers.dispatch import CountOps

# operations that wait for the device: a scalar read, or an output whose size depends on the data
WAITS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique", "aten._unique2",
         "aten.unique_dim", "aten.unique_consecutive", "aten.bincount", "aten.equal", "aten.is_nonzero",
         "aten.repeat_interleave", "aten.allclose"}


def _waits(op, tensors) -> bool:
    name = str(op.overloadpacket)
    return name in WAITS or (name == "aten.index" and any(t.dtype == torch.bool for t in tensors[1:]))  # x[mask]


def waits() -> CountOps:
    return CountOps(_waits, name=lambda op: str(op.overloadpacket))


def test_the_detector_sees_item_and_boolean_indexing():
    x = torch.randn(10)
    with waits() as seen:
        x.sum().item()
        x[x > 0]
        x.abs().sum()
    assert seen.found == {"aten._local_scalar_dense": 1, "aten.index": 1}


@pytest.mark.parametrize("loop", ["eager", "graphed"])
def test_waits_for_the_device_do_not_grow_with_the_number_of_steps(tiny_cfg, tmp_path, loop):
    from tests.helpers.graph import ReplayByRerun

    # "graphed": the loop around CUDA-graph replays, with test_cuda_graph's CPU stand-in
    graphed_step = ReplayByRerun if loop == "graphed" else None
    counts = {}
    for steps in (10, 20):
        cfg = tiny_cfg("model=vgg_bn_noise", f"trainer.max_steps={steps}", "trainer.eval_every=1000",
                       "trainer.log_every=1000", "trainer.checkpoint_every=0", "probe.every=5", "ics.enabled=true",
                       "ics.every=5", "ics.layers=[2,5]", "landscape.enabled=true", "landscape.every=5")
        with waits() as seen:
            train(cfg, tmp_path / str(steps), graphed_step=graphed_step)
        counts[steps] = seen.found
    # once per run: the quantile sample's positions (host tensors) and the final evaluation's two numbers
    assert counts[20] == counts[10], f"per-step waits: {counts[20] - counts[10]}"
