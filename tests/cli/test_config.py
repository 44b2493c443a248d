"""Every config and preset composes into the typed schema; bad keys and types are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException

from ics_study.config import TrainConfig
from ics_study.errors import UserError
from ics_study.validate import validate
from tests.conftest import REPO, compose

GROUPS = {g: sorted(p.stem for p in (REPO / "configs" / g).glob("*.yaml")) for g in ("model", "data", "experiment", "scale")}


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


@pytest.mark.parametrize("scale", GROUPS["scale"])
def test_every_scale_composes_with_every_preset(scale):
    for experiment in GROUPS["experiment"]:
        validate(compose([f"experiment={experiment}", f"scale={scale}"]))
    text = (REPO / "configs" / "scale" / f"{scale}.yaml").read_text()
    assert "How to run" in text.split("\n", 3)[1], "each scale starts with the command that runs it"


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
    ("model.norm=grup", "model.norm='grup' is not valid"),
    ("model.noise.n_sigma=0.5", "n_sigma"),
])
def test_out_of_range_values_are_one_clear_line(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as info:
        validate(compose([override]))
    assert "\n" not in str(info.value)


def test_configs_ship_inside_the_package():
    import ics_study.configs

    assert Path(ics_study.configs.__file__).parent.resolve() == (REPO / "configs").resolve()


def schema_defaults(obj=None, prefix: str = "") -> dict:
    """Every leaf of the schema with its default, by dotted key."""
    out = {}
    for f in dataclasses.fields(obj if obj is not None else TrainConfig()):
        value = getattr(obj if obj is not None else TrainConfig(), f.name)
        out.update(schema_defaults(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value)
                   else {f"{prefix}{f.name}": value})
    return out


def repeated_defaults(folder: Path) -> list[str]:
    """Values that a config file under ``folder`` sets to the schema's own default: a second copy of a
    fact that ics_study/config.py holds (which can only drift from it, or silently do nothing)."""
    defaults, out = schema_defaults(), []

    def leaves(d, prefix):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    for path in sorted(folder.rglob("*.yaml")):
        rel = path.relative_to(folder)
        if rel.parts[0] == "hydra":  # Hydra's own settings, no schema of ours
            continue
        text = path.read_text()
        package = "" if "@package _global_" in text or len(rel.parts) == 1 else f"{rel.parts[0]}."
        data = {k: v for k, v in (yaml.safe_load(text) or {}).items() if k not in ("defaults", "hydra")}
        out += [f"{rel}: {key} = {value!r}" for key, value in leaves(data, package)
                if key in defaults and defaults[key] == value]
    return out


def test_every_default_is_written_once_in_the_schema():
    """configs/ states only deltas from ics_study/config.py; --cfg job still shows every value."""
    repeated = repeated_defaults(REPO / "configs")
    assert not repeated, "defaults repeated under configs/ (keep them in ics_study/config.py only):\n" + "\n".join(repeated)
    shown = compose(["model=vgg_bn_noise"])
    assert shown.trainer.max_steps == 15000 and shown.model.noise.n_sigma == 1.25 and shown.optim.lr == 0.1


def test_the_default_check_sees_a_repeated_value(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "experiment").mkdir()
    (tmp_path / "model" / "m.yaml").write_text("name: m\nwidth: 1.0\nnoise:\n  n_mu: 0.5\n  n_sigma: 2.0\n")
    (tmp_path / "experiment" / "e.yaml").write_text("# @package _global_\ntrainer:\n  max_steps: 15000\n  log_every: 7\n")
    (tmp_path / "train.yaml").write_text("defaults:\n  - base_train\nseed: 0\n")
    assert repeated_defaults(tmp_path) == ["experiment/e.yaml: trainer.max_steps = 15000", "model/m.yaml: model.width = 1.0",
                                           "model/m.yaml: model.noise.n_mu = 0.5", "train.yaml: seed = 0"]
