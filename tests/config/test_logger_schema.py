"""The logger group's schema: keys and types from the logger class's signature and where its **kwargs go."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from simclr.config.logger_schema import typed_logger
from simclr.errors import ConfigError
from tests.helpers import REPO

WANDB = "pytorch_lightning.loggers.WandbLogger"
TENSORBOARD = "pytorch_lightning.loggers.TensorBoardLogger"
CSV = "simclr.training.csv_logger.AppendingCSVLogger"


def typed(target: str, **given: object) -> dict:
    return typed_logger(OmegaConf.create({"_target_": target, **given}), resolve=False)


def test_a_value_is_converted_to_the_type_its_argument_declares() -> None:
    """offline='no' reaching WandbLogger as a string would be true: it is converted, as OmegaConf types do."""
    assert typed(WANDB, offline="no", project="p") == {"_target_": WANDB, "offline": False, "project": "p"}
    assert typed(CSV, flush_logs_every_n_steps="50")["flush_logs_every_n_steps"] == 50


def test_only_the_keys_given_are_passed_on() -> None:
    """WandbLogger computes resume, dir and the rest from its own defaults: None for them would override."""
    assert set(typed(WANDB, name="run")) == {"_target_", "name"}


@pytest.mark.parametrize(
    "target, key, value",
    [(WANDB, "entity", "me"), (WANDB, "tags", ["a", "b"]), (WANDB, "mode", "disabled"), (TENSORBOARD, "flush_secs", 3)],
)
def test_arguments_passed_on_to_wandb_init_or_summary_writer_are_keys(target: str, key: str, value: object) -> None:
    assert typed(target, **{key: value})[key] == value


@pytest.mark.parametrize(
    "target, given, line",
    [
        (WANDB, {"offline": "maybe"}, "logger.offline=maybe must be true or false (WandbLogger or wandb.init:"),
        (CSV, {"flush_logs_every_n_steps": "often"}, "logger.flush_logs_every_n_steps=often must be an integer"),
        (TENSORBOARD, {"default_hp_metric": "x"}, "logger.default_hp_metric=x must be true or false"),
        (WANDB, {"entitty": "me"}, "logger.entitty is not an argument of WandbLogger or wandb.init; did you mean "),
        (CSV, {"entity": "me"}, "logger.entity is not an argument of AppendingCSVLogger;"),
        ("nope.Logger", {}, "logger._target_=nope.Logger cannot be imported (ModuleNotFoundError"),
        ("os.path", {}, "logger._target_=os.path is not a class;"),
    ],
)
def test_a_wrong_key_type_or_class_is_one_line(target: str, given: dict, line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        typed(target, **given)
    assert str(refused.value).startswith(line), refused.value


def test_a_logger_without_a_target_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^logger\._target_ is not set; choose a logger"):
        typed_logger(OmegaConf.create({"name": "x"}))


def test_interpolations_are_left_for_the_job() -> None:
    """The rules run before Hydra's runtime exists: ${paths.output_dir} is checked by the job, not here."""
    assert typed(CSV, save_dir="${paths.output_dir}")["save_dir"] == "${paths.output_dir}"


@pytest.mark.parametrize("option", ["csv", "tensorboard", "wandb"])
def test_every_logger_option_passes_its_own_schema(option: str) -> None:
    logger = OmegaConf.load(REPO / "conf" / "logger" / f"{option}.yaml")
    assert typed_logger(logger, resolve=False)["_target_"] == logger._target_
