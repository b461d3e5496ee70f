"""Shared fixtures: a small CIFAR-10 in the exact standard python layout, and composed configs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import simclr  # noqa: F401  (registers the config resolvers)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# The real CIFAR-10 (python batches under REAL_ROOT/cifar-10-batches-py/), for the tests that skip without it.
REAL_ROOT = Path(os.environ.get("CIFAR10_ROOT", REPO / "data"))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_batch: int = 40, test_size: int = 100, seed: int = 0) -> Path:
    """Writes root/cifar-10-batches-py/ as the official archive lays it out, with random images.

    Each class has its own mean colour, so the data is learnable; returns the batches folder.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(30, 225, size=(10, 3))

    def batch(n: int, name: str) -> dict:
        labels = rng.integers(0, 10, size=n)
        noise = rng.normal(0, 25, size=(n, 3, 32, 32))
        images = np.clip(palette[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
        return {
            "batch_label": name,
            "labels": [int(v) for v in labels],
            "data": images.reshape(n, 3072),
            "filenames": [f"img_{i:05d}.png" for i in range(n)],
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test_size, "testing batch 1 of 1"), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": CLASSES, "num_vis": 3072}, f)
    return folder


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


def compose_config(name: str, overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [])


TINY_SSL = [
    "model=resnet_tiny",
    "model.width=4",
    "model.head.hidden_dim=32",
    "model.head.out_dim=16",
    "trainer=cpu",
    "trainer.precision=32-true",  # the same numbers on every CPU; tests/test_precision.py covers auto and bf16
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "checkpoint.every_n_epochs=1",
    "scheduler.warmup_epochs=1",
    "trainer.log_every_n_steps=1",
    "data.val_size=50",  # 5 images per class of the ~20 each class has here held out for validation
    "knn.k=20",  # the kNN bank holds the other 150
]


@pytest.fixture
def ssl_cfg(cifar_root: Path, tmp_path: Path) -> DictConfig:
    """A tiny pretraining config on the tiny dataset, writing into tmp_path/run."""
    cfg = compose_config("train_ssl", TINY_SSL + [f"data.root={cifar_root}", "data.download=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture(scope="session")
def ssl_checkpoint(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a one-epoch pretraining run on the tiny dataset (made once per session)."""
    from simclr.jobs.train_ssl import train_ssl

    run = tmp_path_factory.mktemp("ssl_run")
    cfg = compose_config(
        "train_ssl", TINY_SSL + [f"data.root={cifar_root}", "data.download=false", "trainer.max_epochs=1"]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
    train_ssl(cfg)
    return run / "checkpoints" / "last.ckpt"


TINY_PROBE = [
    "trainer=cpu",
    "trainer.precision=32-true",
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "data.val_size=50",
    "probe.batch_size=32",  # the 150 images left after the validation split
    "probe.lr=0.05",  # the 8 steps of 2 epochs need it to leave chance behind
    "data.eval_batch_size=64",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
]


def probe_config(cifar_root: Path, out: Path, overrides: list[str]) -> DictConfig:
    cfg = compose_config("train_linear", TINY_PROBE + [f"data.root={cifar_root}", "data.download=false"] + overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg
