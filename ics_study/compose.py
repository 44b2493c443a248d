"""Compose a typed ``TrainConfig`` from overrides without the command line (scripts, tests, notebooks).

    from ics_study.compose import compose
    cfg = compose(["model=vgg_bn_noise", "data=synthetic", "trainer.max_steps=100"])
    summary = ics_study.train.train(cfg, "results/scratch")
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import TrainConfig


def register_schemas() -> None:
    """Typed schemas under names distinct from the YAML files (see configs/train.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_train", node=TrainConfig)


def compose(overrides: Sequence[str] = ()) -> TrainConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="ics_study.configs", version_base="1.3"):
            cfg = hydra_compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_object(cfg)
