"""Pretraining through Lightning on a tiny dataset: steps, kNN monitor, checkpoints, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.errors import CheckpointError, ConfigError
from simclr.jobs.sweep import objective
from simclr.jobs.train_ssl import train_ssl
from simclr.training.checkpoints import CONFIG_KEY, KIND_KEY
from tests.helpers import TinyRun, compose_config

# The tiny dataset's classes have distinct mean colours: a kNN on the features of even a briefly trained
# encoder is far above the 10% of chance (0.52 to 0.61 measured here), and one that mixes up indices or
# labels falls to chance.
WELL_ABOVE_CHANCE = 0.3


def _metric_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_pretraining_logs_and_checkpoints(ssl_run: TinyRun) -> None:
    metrics, run, cfg = ssl_run.metrics, ssl_run.dir, ssl_run.cfg
    assert metrics["val/knn_top1"] > WELL_ABOVE_CHANCE and metrics["test/knn_top1"] > WELL_ABOVE_CHANCE
    assert torch.isfinite(torch.tensor(metrics["train/loss_epoch"]))
    rows = _metric_rows(run)
    assert any(r.get("train/loss_step") for r in rows) and any(r.get("train/lr") for r in rows)
    assert sum(1 for r in rows if r.get("val/knn_top1")) == 2  # every epoch, as configured
    test_rows = [float(r["test/knn_top1"]) for r in rows if r.get("test/knn_top1")]
    assert test_rows == [pytest.approx(metrics["test/knn_top1"])]  # once, at the end
    # What the script returns to Hydra, and the run's results: validation figures, selection on val.
    assert objective(metrics) == ("val/knn_top1", metrics["val/knn_top1"])
    results = json.loads((run / "results.json").read_text())
    assert results["selection"] == "val" and results["objective"] == pytest.approx(metrics["val/knn_top1"])
    assert results["test_knn_top1"] == pytest.approx(metrics["test/knn_top1"])
    assert results["split"]["val_size"] == 50 and results["split"]["val_per_class"] == [5] * 10
    for figure in ("views_pairs.png", "embeddings_test_pca.png"):
        assert (run / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
    epoch_times = [float(r["time/epoch_s"]) for r in rows if r.get("time/epoch_s")]
    assert len(epoch_times) == 2 and all(t > 0 for t in epoch_times)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch0000.ckpt", "epoch0001.ckpt", "last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt[KIND_KEY] == "pretrain" and (ckpt["epoch"], ckpt["global_step"]) == (1, 12)  # 6 steps an epoch
    stored = ckpt[CONFIG_KEY]
    assert stored["model"]["width"] == 4 and stored["loss"]["temperature"] == cfg.loss.temperature
    assert stored["split"] == results["split"]  # the held-out images, recorded with the weights
    assert stored["derived"]["derived/lr"] == pytest.approx(cfg.optimizer.lr)


def test_without_validation_split_the_monitor_is_labelled_test(ssl_cfg: DictConfig) -> None:
    """data.val_size=0: the usual SSL practice, monitored on the test split and recorded as such."""
    with open_dict(ssl_cfg):
        ssl_cfg.data.val_size = 0
    metrics = train_ssl(ssl_cfg)
    run = Path(ssl_cfg.paths.output_dir)
    rows = _metric_rows(run)
    assert not any(r.get("val/knn_top1") for r in rows) and "val/knn_top1" not in metrics
    assert sum(1 for r in rows if r.get("test/knn_top1")) == 3  # each of the 2 epochs, then the end
    assert metrics["test/knn_top1"] > WELL_ABOVE_CHANCE
    assert objective(metrics) == (None, None)  # nothing for a sweep to select on
    results = json.loads((run / "results.json").read_text())
    assert results["selection"] == "test" and results["objective"] is None
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt[CONFIG_KEY]["split"]["selection"] == "test" and ckpt[CONFIG_KEY]["split"]["val_size"] == 0


def test_the_monitor_runs_after_the_last_epoch_whatever_its_period(ssl_cfg: DictConfig) -> None:
    """3 epochs validated every 2: the monitor runs after epoch 2 and again after epoch 3, the last, so the run
    ends with a validation figure of its final encoder (a sweep's objective), then the test kNN."""
    with open_dict(ssl_cfg):
        ssl_cfg.trainer.max_epochs = 3
        ssl_cfg.trainer.check_val_every_n_epoch = 2
    metrics = train_ssl(ssl_cfg)
    rows = _metric_rows(Path(ssl_cfg.paths.output_dir))
    val_steps = [int(r["step"]) for r in rows if r.get("val/knn_top1")]
    last_step = max(int(r["step"]) for r in rows)
    assert len(val_steps) == 2 and val_steps[-1] == last_step > val_steps[0]
    assert metrics["val/knn_top1"] == pytest.approx(
        float(next(r for r in rows[::-1] if r.get("val/knn_top1"))["val/knn_top1"])
    )
    assert metrics["val/knn_top1"] > WELL_ABOVE_CHANCE and objective(metrics)[0] == "val/knn_top1"


def test_limit_val_batches_0_switches_the_knn_evaluation_off(ssl_cfg: DictConfig) -> None:
    """trainer.limit_val_batches=0 (the benchmarks' setting): no kNN monitor in the epochs, no test kNN after."""
    with open_dict(ssl_cfg):
        ssl_cfg.trainer.limit_val_batches = 0
        ssl_cfg.trainer.max_epochs = 1
    metrics = train_ssl(ssl_cfg)
    assert "train/loss_epoch" in metrics and not [k for k in metrics if "knn" in k]
    assert not any(
        r.get("val/knn_top1") or r.get("test/knn_top1") for r in _metric_rows(Path(ssl_cfg.paths.output_dir))
    )


def test_smaller_views_train_the_encoder_and_evaluation_reads_whole_images(ssl_cfg: DictConfig) -> None:
    """augmentation.size=16: the steps see 16 x 16 views, the kNN monitor whole 32 x 32 images."""
    record = Path(ssl_cfg.paths.output_dir).parent / "sizes.pt"
    with open_dict(ssl_cfg):
        ssl_cfg.augmentation.size = 16
        ssl_cfg.trainer.callbacks = [{"_target_": "tests.callbacks.RecordEncoderInputs", "out_file": str(record)}]
    metrics = train_ssl(ssl_cfg)
    assert torch.load(record) == {"train": [(16, 16)], "eval": [(32, 32)]}
    assert metrics["val/knn_top1"] > WELL_ABOVE_CHANCE
    ckpt = torch.load(
        Path(ssl_cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert ckpt[CONFIG_KEY]["augmentation"]["size"] == 16


def test_resume_from_missing_checkpoint_fails_early(ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = "runs/nowhere/last.ckpt"
    with pytest.raises(CheckpointError, match="runs/nowhere/last.ckpt does not exist"):
        train_ssl(ssl_cfg)
    assert not Path(ssl_cfg.paths.output_dir).exists()


def test_tensorboard_logger_uses_the_same_metric_names(ssl_cfg: DictConfig) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Path(ssl_cfg.paths.output_dir)
    with open_dict(ssl_cfg):
        ssl_cfg.logger = compose_config("train_ssl", ["logger=tensorboard"]).logger
        ssl_cfg.trainer.max_epochs = 1
    train_ssl(ssl_cfg)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/loss_epoch", "train/lr", "val/knn_top1", "test/knn_top1", "time/epoch_s"} <= tags


def test_more_neighbours_than_the_knn_bank_is_refused_before_training(ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.knn.k = 151  # the bank: 200 training images minus 50 held out
    with pytest.raises(ConfigError, match=r"knn.k=151 asks for more neighbours than the 150 images of the kNN bank"):
        train_ssl(ssl_cfg)
    assert not (Path(ssl_cfg.paths.output_dir) / "checkpoints").exists()
