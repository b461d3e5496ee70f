"""Shared fixtures: the tiny CIFAR-10, a tiny pretraining config, and the runs several modules read, made once.

The data and config helpers they use are in tests/helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from tests.helpers import TinyRun, ssl_config, use_one_thread, write_cifar10

use_one_thread()


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention tiny CIFAR-10: 200 train and 100 test images."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root)
    return root


@pytest.fixture
def fresh_cifar_root(tmp_path: Path) -> Path:
    """A tiny CIFAR-10 a test may damage."""
    write_cifar10(tmp_path)
    return tmp_path


@pytest.fixture
def ssl_cfg(cifar_root: Path, tmp_path: Path) -> DictConfig:
    """The tiny pretraining config (tests.helpers.TINY_SSL: 2 epochs) on the tiny dataset, writing into tmp_path/run."""
    return ssl_config(cifar_root, tmp_path / "run")


@pytest.fixture(scope="session")
def ssl_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The tiny pretraining run (2 epochs: checkpoints/epoch0000.ckpt, epoch0001.ckpt, last.ckpt), made once.

    Read-only by convention: a test that changes a run copies it first."""
    from simclr.jobs.train_ssl import train_ssl

    run = tmp_path_factory.mktemp("ssl_run") / "run"
    cfg = ssl_config(cifar_root, run)
    return TinyRun(run, cfg, train_ssl(cfg))


@pytest.fixture(scope="session")
def ssl_checkpoint(ssl_run: TinyRun) -> Path:
    """last.ckpt (end of epoch 1) of the tiny pretraining run."""
    return ssl_run.checkpoints / "last.ckpt"


@pytest.fixture(scope="session")
def ddp_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny run on two CPU processes (`trainer=ddp_sim`), made once; returns (run dir, records dir).

    tests.callbacks.RecordBatches leaves each rank's batch indices per epoch in the records dir, RecordFirstDraw
    each rank's first crop boxes. 51 images held out: the 51 queries and the 149 bank images split unevenly
    over 2 ranks, so the evaluation shards are padded with a repeated image, which the monitor must drop."""
    from simclr.jobs.train_ssl import train_ssl

    base = tmp_path_factory.mktemp("ddp")
    cfg = ssl_config(cifar_root, base / "run", ["trainer=ddp_sim", "data.val_size=51"])
    with open_dict(cfg):
        cfg.trainer.callbacks = [
            {"_target_": "tests.callbacks.RecordBatches", "out_dir": str(base / "records")},
            {"_target_": "tests.callbacks.RecordFirstDraw", "out_dir": str(base / "records")},
        ]
    train_ssl(cfg)
    return base / "run", base / "records"
