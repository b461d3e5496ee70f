"""The Lightning path under DDP (two CPU processes, `trainer=ddp_sim`: tests/conftest.py's ddp_run) and under
mixed precision on a GPU (on the CPU: tests/training/test_precision.py). A DDP run resumed:
tests/training/test_randomness.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.jobs.train_ssl import train_ssl


def _with(cfg: DictConfig, out: Path, record: Path, **trainer: object) -> DictConfig:
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.trainer.callbacks = [{"_target_": "tests.callbacks.RecordBatches", "out_dir": str(record)}]
        for key, value in trainer.items():
            cfg.trainer[key] = value
    return cfg


def test_each_rank_sees_a_disjoint_shard_every_epoch(ddp_run: tuple[Path, Path]) -> None:
    _, record = ddp_run
    for epoch in range(2):
        shards = [torch.load(record / f"rank{r}_epoch{epoch}.pt", weights_only=True) for r in range(2)]
        assert all(s["world_size"] == 2 for s in shards)
        a, b = (set(s["indices"].tolist()) for s in shards)
        assert len(a) == len(b) == 96  # 100 images per rank, batches of 32 / 2 = 16, last one dropped
        assert not a & b
    first = torch.load(record / "rank0_epoch0.pt", weights_only=True)["indices"]
    second = torch.load(record / "rank0_epoch1.pt", weights_only=True)["indices"]
    assert not torch.equal(first, second)  # reshuffled each epoch


def test_global_and_per_device_batch_are_logged(ddp_run: tuple[Path, Path]) -> None:
    run, _ = ddp_run
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch0000.ckpt", "epoch0001.ckpt", "last.ckpt"]
    hparams = (run / "hparams.yaml").read_text()
    assert "derived/global_batch: 32" in hparams and "derived/per_device_batch: 16" in hparams
    assert "derived/world_size: 2" in hparams
    # The schedule counts this process's steps: 100 images per process in batches of 16 -> 6 per epoch.
    assert "derived/total_steps: 12" in hparams and "derived/warmup_steps: 6" in hparams
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(r.get("val/knn_top1") for r in rows)


def test_knn_monitor_across_ranks_equals_one_process(ddp_run: tuple[Path, Path], cifar_root: Path) -> None:
    """Each rank embeds a shard (padded with repeats); gathered and deduplicated, the bank and the queries
    are those of one process: the logged val/knn_top1 and test/knn_top1 are recomputed here exactly."""
    from simclr.data.datamodule import CIFAR10DataModule
    from simclr.evaluation.features import extract_features
    from simclr.evaluation.knn import knn_predict
    from simclr.training.checkpoints import CONFIG_KEY, load_pretrained_encoder
    from simclr.training.probe import LinearProbe

    run, _ = ddp_run
    encoder, config = load_pretrained_encoder(run / "checkpoints" / "last.ckpt")
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, val_size=config["data"]["val_size"], seed=config["seed"])
    dm.setup()
    stored = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[CONFIG_KEY]
    assert stored["split"] == dm.split.record()
    normalize = LinearProbe(encoder).augment.normalize
    train = extract_features(encoder, dm.train_set.images, normalize=normalize)
    test = extract_features(encoder, dm.test_set.images, normalize=normalize)
    bank, bank_labels = train[dm.split.train], dm.train_set.labels[dm.split.train]

    def top1(query: torch.Tensor, labels: torch.Tensor) -> float:
        return (knn_predict(query, bank, bank_labels, 10, **config["knn"]) == labels).float().mean().item()

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    logged_val = [float(r["val/knn_top1"]) for r in rows if r.get("val/knn_top1")][-1]
    logged_test = [float(r["test/knn_top1"]) for r in rows if r.get("test/knn_top1")]
    assert logged_val == pytest.approx(top1(train[dm.split.val], dm.train_set.labels[dm.split.val]), abs=1e-6)
    assert logged_test == [pytest.approx(top1(test, dm.test_set.labels), abs=1e-6)]


GPU = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16 autocast needs a GPU (Lightning maps it to bf16 on CPU)"
)


@GPU
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_step_keeps_loss_in_float32(ssl_cfg: DictConfig, tmp_path: Path, precision: str) -> None:
    cfg = _with(ssl_cfg, tmp_path / "run", tmp_path / "record", accelerator="gpu", precision=precision, max_epochs=1)
    train_ssl(cfg)
    record = torch.load(tmp_path / "record" / "rank0_epoch0.pt", weights_only=True)
    assert record["loss_dtypes"] == ["torch.float32"]  # the callback also failed on any non-finite loss
