"""Compose a typed ``TrainConfig`` from overrides without the command line (scripts, tests, notebooks).

    from .compose import compose
    cfg = compose(["model=vgg_bn_noise", "data=synthetic", "trainer.max_steps=100"])
    summary = ics_study.train.train(cfg, "results/scratch")
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from .config import TrainConfig


def config_dir() -> Path | None:
    """The configs folder of a source checkout used without installing (PYTHONPATH=repo); else None."""
    if importlib.util.find_spec("ics_study.configs") is not None:
        return None
    folder = Path(__file__).resolve().parents[1] / "configs"
    return folder if (folder / "train.yaml").exists() else None


def hydra_config_path() -> str:
    """For ``hydra.main``: the installed package, or the checkout's folder."""
    folder = config_dir()
    return str(folder) if folder else "pkg://ics_study.configs"


def register_schemas() -> None:
    """Typed schemas under names distinct from the YAML files (see configs/train.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_train", node=TrainConfig)


def compose(overrides: Sequence[str] = ()) -> TrainConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    register_schemas()
    GlobalHydra.instance().clear()
    try:
        folder = config_dir()
        init = (initialize_config_dir(config_dir=str(folder), version_base="1.3") if folder
                else initialize_config_module(config_module="ics_study.configs", version_base="1.3"))
        with init:
            cfg = hydra_compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_object(cfg)
