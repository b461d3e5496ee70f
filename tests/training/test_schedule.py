"""The warm-up + cosine schedule follows the run the Trainer really makes, however it is set to stop."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.errors import ConfigError
from simclr.jobs.train_ssl import train_ssl
from tests.helpers import TinyRun

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
    return _lrs(out)


def _lrs(run: Path) -> list[tuple[int, float]]:
    """(step, train/lr) of every logged step of a run."""
    with open(run / "metrics.csv") as f:
        return [(int(r["step"]), float(r["train/lr"])) for r in csv.DictReader(f) if r.get("train/lr")]


def _expected(step: int, total: int, warmup: int, peak: float) -> float:
    """The documented schedule, written out here (not simclr.training.optim.warmup_cosine): the rate rises
    linearly to the peak over the warm-up's steps, then follows half a cosine period down to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


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


def test_the_tiny_runs_rates_by_hand(ssl_run: TinyRun) -> None:
    """The 2-epoch tiny run (12 steps, warm-up 6) at a few steps, worked out by hand: peak x (s + 1) / 6 in
    the warm-up; after it peak x 0.5 x (1 + cos(pi x (s - 6) / 6))."""
    peak = ssl_run.cfg.optimizer.lr
    lrs = dict(_lrs(ssl_run.dir))
    hand = {0: 1 / 6, 2: 3 / 6, 5: 1.0, 6: 1.0, 8: 0.75, 9: 0.5, 11: (1 - math.sqrt(3) / 2) / 2}  # cos(5 pi / 6)
    for step, fraction in hand.items():
        assert lrs[step] == pytest.approx(peak * fraction, rel=1e-6), step


def test_resumed_run_continues_the_same_schedule(ssl_run: TinyRun, ssl_cfg: DictConfig, tmp_path: Path) -> None:
    """Resumed from the end of epoch 0 of the tiny run (same config): the same rate at every later step, the
    same number of steps, and the checkpoint it resumed from left as it was."""
    start = ssl_run.checkpoints / "epoch0000.ckpt"
    before = start.read_bytes()
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = str(start)
    resumed = _run(ssl_cfg, tmp_path / "resumed")
    full = dict(_lrs(ssl_run.dir))
    assert [s for s, _ in resumed] == list(range(STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH))
    for step, lr in resumed:
        assert lr == pytest.approx(full[step], rel=1e-6, abs=1e-12), step
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    assert start.read_bytes() == before


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
