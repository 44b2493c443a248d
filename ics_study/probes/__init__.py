"""Probes observe training without changing it. Each returns arrays; the recorder writes them."""

from .activations import ActivationProbe

__all__ = ["ActivationProbe"]
