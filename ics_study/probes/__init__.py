"""Probes observe training without changing it. Each returns arrays or device scalars; the recorder writes them."""

from .activations import ActivationProbe
from .curvature import SharpnessProbe
from .ics import ICSProbe
from .landscape import LandscapeProbe
from .replay import PendingScalars, Replay

__all__ = ["ActivationProbe", "ICSProbe", "LandscapeProbe", "PendingScalars", "Replay", "SharpnessProbe"]
