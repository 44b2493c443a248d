"""The training runtime: ``train(cfg, run_dir)`` and the parts a run is made of."""

from .loop import train

__all__ = ["train"]
