"""simclr/jobs/group_overrides.py: the overrides Hydra and OmegaConf would answer with a traceback."""

from __future__ import annotations

import pytest

from simclr.config.schema import PRIMARY_SCHEMAS
from simclr.errors import ConfigError
from simclr.jobs.group_overrides import check_group_overrides, default_choices
from tests.helpers import CONF


def test_the_defaults_list_is_read_from_the_primary_config() -> None:
    choices = default_choices(CONF, "train_linear")
    assert choices["model"] is None and choices["probe"] == "cached_adam" and choices["trainer"] == "gpu"
    assert default_choices(CONF, "train_ssl")["model"] == "resnet18"


@pytest.mark.parametrize(
    ("config", "args"),
    [
        ("train_linear", ["model=resnet_tiny", "model.width=8"]),  # selected on the command line
        ("train_linear", ["+model=resnet_tiny", "model.width=8"]),
        ("train_ssl", ["model.width=8"]),  # selected by the defaults list
        ("train_linear", ["-m", "model=resnet18,resnet_tiny", "model.width=8"]),  # by a sweep
        ("train_linear", ["ckpt=run/checkpoints/last.ckpt", "data.batch_size=64"]),  # other groups' keys
        ("train_linear", ["model.width=("]),  # malformed: Hydra's own one-line report
        ("train_linear", ["-cd", "my_conf", "model.width=8"]),  # another config directory: Hydra's to judge
        ("train_ssl", ["-m", "model=glob(*,exclude=resnet50)", "model.width=8"]),  # a glob over the options
        ("train_ssl", ["~logger"]),  # a group deleted, none of its keys set
        ("train_ssl", ["~model=resnet18"]),  # deleted by the name of its option
        ("train_ssl", ["augmentation.crop_ratio.0=0.5", "augmentation.crop_ratio=[0.5,2]"]),  # a list's item, whole
        ("train_ssl", ["+logger.tags.x=1", "optimizer=sgd", "optimizer.momentum=0.8"]),  # open, or not in the base
    ],
)
def test_what_hydra_composes_passes(config: str, args: list[str]) -> None:
    check_group_overrides(args, CONF, config, PRIMARY_SCHEMAS[config])


@pytest.mark.parametrize(
    ("config", "args", "line"),
    [
        ("train_linear", ["model.width=8"], "model.width=8 sets a key of model, which this command does not select"),
        ("train_linear", ["+model.head.out_dim=8"], "+model.head.out_dim=8 sets a key of model"),
        ("train_ssl", ["model=null"], "model=null is not an option of model; choose one of ['resnet18'"),
        ("train_ssl", ["experiment=null", "trainer=cpu"], "experiment=null is not an option of experiment"),
        ("train_ssl", ["--cfg", "job", "model=null"], "model=null is not an option of model"),
        ("train_ssl", ["augmentation=crop_flip", "augmentation=1"], "augmentation=1 is not an option of augmentation"),
        ("train_ssl", ["-m", "optimizer=adam,true"], "optimizer=true is not an option of optimizer"),
        ("train_linear", ["--info", "model.width=8"], "model.width=8 sets a key of model"),
        (
            "train_ssl",
            ["~logger", "logger.name=x"],
            "logger.name=x sets a key of logger, which this command does not select (~logger deletes it)",
        ),
        ("train_linear", ["model=resnet18", "~model", "model.width=8"], "model.width=8 sets a key of model"),
        ("train_ssl", ["~model=1"], "~model=1: ~model deletes the group; to name the option it deletes, give its name"),
        ("train_ssl", ["model=${nope}"], "model=${nope} is not an option of model"),
        ("train_ssl", ["-m", "model=interval(1,3)"], "model=interval(1,3): model is chosen by name, not from a range"),
        (
            "train_ssl",
            ["augmentation.crop_ratio.x=1"],
            "augmentation.crop_ratio.x=1: augmentation.crop_ratio is a list",
        ),
        ("train_ssl", ["trainer.max_epochs.x=1"], "trainer.max_epochs.x=1: trainer.max_epochs is a single value"),
        ("train_ssl", ["+data.root.x=1"], "+data.root.x=1: data.root is a single value"),
        ("train_ssl", ["optimizer.betas.x=1"], "optimizer.betas.x=1: optimizer.betas is a list"),  # Adam's own key
    ],
)
def test_what_would_be_a_traceback_is_one_line(config: str, args: list[str], line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_group_overrides(args, CONF, config, PRIMARY_SCHEMAS[config])
    assert str(refused.value).startswith(line) and "\n" not in str(refused.value)
