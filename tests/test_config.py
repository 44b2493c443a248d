"""Every config and preset composes into the typed schema; bad keys and types are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from ics_study.config import TrainConfig
from ics_study.errors import UserError
from ics_study.validate import validate

from .conftest import REPO, compose

GROUPS = {g: sorted(p.stem for p in (REPO / "configs" / g).glob("*.yaml")) for g in ("model", "data", "experiment")}


def test_defaults_are_the_papers_protocol():
    cfg = compose()
    assert isinstance(cfg, TrainConfig)
    assert (cfg.model.name, cfg.model.depth, cfg.model.width) == ("vgg_bn", 16, 1.0)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.1, 0.0, 0.0)
    assert (cfg.data.name, cfg.data.batch_size, cfg.trainer.max_steps) == ("cifar10", 128, 15000)
    assert not cfg.data.augment.crop and not cfg.data.augment.flip
    noise = compose(["model=vgg_bn_noise"]).model.noise
    assert (noise.n_mu, noise.n_sigma, noise.r_mu, noise.r_sigma) == (0.5, 1.25, 0.1, 0.1)


@pytest.mark.parametrize("model", GROUPS["model"])
@pytest.mark.parametrize("data", GROUPS["data"])
def test_every_model_and_dataset_compose_and_validate(model, data):
    cfg = compose([f"model={model}", f"data={data}"])
    assert cfg.model.name == model and cfg.data.name == data
    if (model == "dln") != (data == "linear_regression"):  # the DLN has its own task
        with pytest.raises(UserError, match="model=dln goes with data=linear_regression"):
            validate(cfg)
    elif model == "dln":  # the VGG default lr 0.1 on the summed l2 loss would diverge within steps
        with pytest.raises(UserError, match="diverges within a few steps.*use experiment=dln"):
            validate(cfg)
        validate(compose([f"model={model}", f"data={data}", "optim.lr=1e-6"]))
    else:
        validate(cfg)


@pytest.mark.parametrize("experiment", GROUPS["experiment"])
def test_every_preset_composes(experiment):
    validate(compose([f"experiment={experiment}"]))
    text = (REPO / "configs" / "experiment" / f"{experiment}.yaml").read_text()
    assert "How to run" in text.split("\n", 3)[1], "each preset starts with the command that runs it"


@pytest.mark.parametrize("override, message", [
    ("model.dpeth=11", "dpeth"),
    ("optim.lr=abc", "optim.lr=abc"),
    ("model=vgg_bnn", "vgg_bnn"),
    ("trainer.max_steps=1.5", "max_steps"),
])
def test_bad_keys_and_types_are_refused(override, message):
    with pytest.raises(ConfigCompositionException, match=message):
        compose([override])


@pytest.mark.parametrize("override, message", [
    ("model.depth=12", "model.depth=12 is not valid; choose one of: 11, 13, 16, 19"),
    ("optim.lr=-0.1", "optim.lr=-0.1 must be positive"),
    ("trainer.max_steps=0", "trainer.max_steps=0 must be positive"),
    ("model.norm=group", "model.norm='group' is not valid"),
    ("model.noise.n_sigma=0.5", "n_sigma"),
])
def test_out_of_range_values_are_one_clear_line(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as info:
        validate(compose([override]))
    assert "\n" not in str(info.value)


def test_configs_ship_inside_the_package():
    import ics_study.configs

    assert Path(ics_study.configs.__file__).parent.resolve() == (REPO / "configs").resolve()
