"""No operation of a training step mixes memory layouts.

The model runs channels-last (``trainer.channels_last``, the default). An elementwise operation that
gets one operand in NHWC and another in NCHW order iterates in one layout and reads the other across
strides: on a GPU those reads are uncoalesced, up to 8x their memory traffic (the noisy BN's first
form did this with its noise, in every layer, forward and backward). The CPU cannot time that, but it
can see it: this runs short trainings of every VGG variant (and of the noisy one with augmentation,
a fixed probe batch, post-ReLU probes, bf16), with probes, ICS and the landscape at every step, under
a dispatch mode that records each operation whose 4-D operands come in both layouts. The rule is for
the default layout: with ``trainer.channels_last=false`` the noise, drawn channels-last so that a seed
gives the same noise in both, is read across strides.
"""

from __future__ import annotations

import pytest
import torch

from ics_study.train import train
from tests.helpers.dispatch import CountOps


def _layout(t: torch.Tensor) -> str | None:
    if t.is_contiguous() and not t.is_contiguous(memory_format=torch.channels_last):
        return "NCHW"
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return "NHWC"
    return None  # a view (the probe's channel gather reads one) or a shape where both agree


def mixed_layouts(min_numel: int = 1000) -> CountOps:
    """Counts ``{op: calls}`` of operations with NCHW and NHWC operands of more than ``min_numel``."""
    return CountOps(lambda op, tensors: len({_layout(t) for t in tensors if t.dim() == 4 and t.numel() > min_numel}
                                            - {None}) > 1)


def test_the_detector_sees_a_mixed_layout_product():
    a = torch.randn(8, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    with mixed_layouts() as seen:
        a * torch.randn(8, 16, 8, 8)  # NHWC times NCHW
        a * torch.randn(8, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    assert seen.found == {"aten.mul.Tensor": 1}


VARIANTS = [[f"model={m}"] for m in ("vgg", "vgg_bn", "vgg_bn_noise", "vgg_lp1", "vgg_lp2", "vgg_lpinf", "vgg_noise",
                                     "vgg_ln", "vgg_gn", "vgg_ws_gn", "vgg_bn_center", "vgg_bn_scale", "vgg_bn_running")] + [
    ["model=vgg_bn_noise", f"model.noise.granularity={g}", "model.noise.redraw_every=2"] for g in ("layer", "position")] + [
    ["model=vgg_bn_noise", *extra] for extra in (
        ["data.augment.flip=true", "data.augment.crop=true"],  # the crop's gather comes out NCHW
        ["probe.batch=fixed"], ["probe.points=[post_relu]"], ["trainer.precision=bf16"])]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(o))
def test_a_training_step_keeps_one_layout(tiny_cfg, tmp_path, overrides):
    cfg = tiny_cfg(*overrides, "trainer.max_steps=2", "trainer.eval_every=2", "probe.every=1",
                   "ics.enabled=true", "ics.every=1", "ics.layers=[2,5]", "landscape.enabled=true",
                   "landscape.every=1", "landscape.eta_scales=[1.0]")
    assert cfg.trainer.channels_last
    with mixed_layouts() as seen:
        train(cfg, tmp_path)
    assert seen.found == {}, f"operations with NCHW and NHWC operands (uncoalesced on a GPU): {seen.found}"
