"""Small models for tests that need a real network but not its size."""

from __future__ import annotations

import torch

from ics_study.config import ModelConfig
from ics_study.models import build_model


def tiny_model(norm="batch"):
    torch.manual_seed(0)
    return build_model(ModelConfig(name="t", depth=11, width=0.125, norm=norm))
