"""The warm-up + cosine schedule follows the run the Trainer really makes, however it is set to stop."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from simclr.errors import ConfigError
from simclr.jobs.train_ssl import train_ssl
from simclr.training.optim import warmup_cosine

# The tiny dataset: 200 training images, batch 32 -> 6 optimizer steps per epoch.
STEPS_PER_EPOCH = 6


def _run(ssl_cfg: DictConfig, out: Path, warmup_epochs: float = 1.0, **trainer: object) -> list[tuple[int, float]]:
    with open_dict(ssl_cfg):
        ssl_cfg.paths.output_dir = str(out)
        ssl_cfg.scheduler.warmup_epochs = warmup_epochs
        ssl_cfg.trainer.check_val_every_n_epoch = 100
        for key, value in trainer.items():
            ssl_cfg.trainer[key] = value
    train_ssl(ssl_cfg)
    with open(out / "metrics.csv") as f:
        return [(int(r["step"]), float(r["train/lr"])) for r in csv.DictReader(f) if r.get("train/lr")]


def _expected(step: int, total: int, warmup: int, peak: float) -> float:
    return peak * warmup_cosine(step, total, warmup, 0.0)


@pytest.mark.parametrize(
    "trainer, total, warmup",
    [
        ({"max_epochs": 3}, 3 * STEPS_PER_EPOCH, STEPS_PER_EPOCH),
        ({"max_epochs": 5, "max_steps": 10}, 10, STEPS_PER_EPOCH),  # max_steps ends the run first
        ({"max_epochs": -1, "max_steps": 10}, 10, STEPS_PER_EPOCH),
        ({"max_epochs": 3, "limit_train_batches": 4}, 12, 4),  # an epoch is 4 steps, warm-up too
    ],
)
def test_warmup_and_cosine_follow_the_real_number_of_steps(
    ssl_cfg: DictConfig, tmp_path: Path, trainer: dict, total: int, warmup: int
) -> None:
    lrs = _run(ssl_cfg, tmp_path / "run", **trainer)
    peak = ssl_cfg.optimizer.lr
    assert [s for s, _ in lrs] == list(range(total))  # one rate per optimizer step, each logged
    at_peak = [s for s, lr in lrs if lr == pytest.approx(peak, rel=1e-6)]
    assert at_peak == [warmup - 1, warmup]  # the warm-up ends on its last step; the cosine starts from the peak
    for step, lr in lrs:
        assert lr == pytest.approx(_expected(step, total, warmup, peak), rel=1e-6, abs=1e-12), step
    last = lrs[-1][1]  # the cosine is where this run's length puts it at the last step, not another length's
    assert last == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup))))
    after_peak = [lr for s, lr in lrs if s >= warmup]
    assert after_peak == sorted(after_peak, reverse=True) and last < after_peak[0]


def test_resumed_run_continues_the_same_schedule(ssl_cfg: DictConfig, tmp_path: Path) -> None:
    full = dict(_run(ssl_cfg, tmp_path / "full", max_epochs=3))
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = str(tmp_path / "full" / "checkpoints" / "epoch0000.ckpt")
    resumed = _run(ssl_cfg, tmp_path / "resumed", max_epochs=3)
    assert [s for s, _ in resumed] == list(range(STEPS_PER_EPOCH, 3 * STEPS_PER_EPOCH))
    for step, lr in resumed:
        assert lr == pytest.approx(full[step], rel=1e-6, abs=1e-12), step


@pytest.mark.parametrize(
    "trainer, match",
    [
        ({"accumulate_grad_batches": 2}, r"trainer.accumulate_grad_batches=2: accumulating gradients adds no"),
    ],
)
def test_schedules_that_cannot_be_right_are_refused(
    ssl_cfg: DictConfig, tmp_path: Path, trainer: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        _run(ssl_cfg, tmp_path / "run", **trainer)


def test_a_warmup_longer_than_the_run_is_kept_and_said(
    ssl_cfg: DictConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lrs = _run(ssl_cfg, tmp_path / "run", warmup_epochs=2.0, max_epochs=1)
    peak = ssl_cfg.optimizer.lr
    assert [lr for _, lr in lrs] == pytest.approx([peak * (s + 1) / 12 for s in range(6)], rel=1e-6)
    assert "scheduler.warmup_epochs=2.0 is 12 steps (6 per epoch), not shorter than the run's 6 steps" in caplog.text


def test_schedule_length_refuses_a_run_without_end() -> None:
    """The same refusal for direct callers of the module, whose config `validate` never saw."""
    from types import SimpleNamespace

    from simclr.training.optim import schedule_length

    endless = SimpleNamespace(
        accumulate_grad_batches=1, estimated_stepping_batches=math.inf, max_epochs=-1, max_steps=-1
    )
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=-1 and trainer.max_steps=-1 give no end"):
        schedule_length(endless, warmup_epochs=1.0)
