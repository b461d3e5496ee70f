"""Hydra's sweep syntax read as Optuna distributions: the forms hydra-optuna-sweeper 1.3 accepted mean the
same here, and a key on the command line replaces the same key of the sweeper's `params`."""

from __future__ import annotations

import pytest
from omegaconf import read_write
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from simclr.errors import ConfigError
from simclr.jobs.optuna_space import search_space, trial_overrides
from simclr.jobs.optuna_study import check_optuna_sweep
from tests.helpers import compose_config


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("loss.temperature=tag(log, interval(0.05, 1.0))", FloatDistribution(0.05, 1.0, log=True)),
        ("optimizer.lr=interval(1e-4, 1e-2)", FloatDistribution(1e-4, 1e-2)),
        ("trainer.max_epochs=tag(int, interval(1, 8))", IntDistribution(1, 8)),
        ("trainer.max_epochs=tag(int, log, interval(1, 8))", IntDistribution(1, 8, log=True)),
        ("data.batch_size=choice(128, 256)", CategoricalDistribution((128, 256))),
        ("data.batch_size=128,256,512", CategoricalDistribution((128, 256, 512))),
        ("model=choice(resnet18, resnet_tiny)", CategoricalDistribution(("resnet18", "resnet_tiny"))),
        ("trainer.max_epochs=range(2, 10, 2)", IntDistribution(2, 8, step=2)),
        ("scheduler.warmup_epochs=range(0.5, 2.0, 0.5)", FloatDistribution(0.5, 1.5, step=0.5)),
    ],
)
def test_each_sweep_form_is_an_optuna_distribution(override: str, expected: object) -> None:
    space, fixed = search_space(None, [override])
    assert list(space.values()) == [expected] and fixed == []


def test_the_command_line_replaces_the_sweepers_params() -> None:
    params = {"loss.temperature": "tag(log, interval(0.05, 1.0))", "data.batch_size": "choice(128, 256, 512)"}
    space, fixed = search_space(params, ["data.batch_size=64", "optimizer.lr=interval(1e-3, 1e-2)", "trainer=cpu"])
    assert set(space) == {"loss.temperature", "optimizer.lr"}
    assert fixed == ["data.batch_size=64", "trainer=cpu"]
    assert trial_overrides(fixed, {"loss.temperature": 0.25, "optimizer.lr": 0.003}) == [
        "data.batch_size=64",
        "trainer=cpu",
        "loss.temperature=0.25",
        "optimizer.lr=0.003",
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=interval(1e-2, 1e-4)", "optimizer.lr=interval(1e-2, 1e-4) is empty"),
        ("trainer.max_epochs=range(5, 2)", "trainer.max_epochs=range(5, 2) is an empty range"),
        ("optimizer.lr=tag(log, interval(0, 1e-2))", "optimizer.lr=tag(log, interval(0, 1e-2)) is not a range Optuna"),
    ],
)
def test_a_range_optuna_cannot_draw_from_is_refused_before_the_study(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        search_space(None, [override])
    assert str(refused.value).startswith(message)
    cfg = compose_config("train_ssl", ["hydra/sweeper=optuna"], hydra=True)
    with read_write(cfg.hydra):  # as Hydra records the command line of a multirun
        cfg.hydra.overrides.task = [override]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_optuna_sweep(cfg)  # CheckConfig.on_multirun_start: one line, exit status 2
