"""Augmentation randomness per process: independent across DDP processes, and resumed exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.jobs.train_ssl import train_ssl
from simclr.training.randomness import new_generator, process_seed
from tests.conftest import TINY_SSL, compose_config

EPOCHS = 3  # 200 images, global batch 32: 6 steps of 16 images per process and epoch


def _ddp_config(cifar_root: Path, out: Path, callbacks: list[dict], *extra: str) -> DictConfig:
    cfg = compose_config(
        "train_ssl",
        TINY_SSL
        + [
            f"data.root={cifar_root}",
            "data.download=false",
            "trainer=ddp_sim",
            f"trainer.max_epochs={EPOCHS}",
            "trainer.check_val_every_n_epoch=100",
            *extra,
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.trainer.callbacks = callbacks
    return cfg


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_process_seeds_differ_by_rank_and_seed() -> None:
    seeds = {process_seed(s, r) for s in range(4) for r in range(8)}
    assert len(seeds) == 32
    a, b = new_generator(0, 0, torch.device("cpu")), new_generator(0, 1, torch.device("cpu"))
    assert not torch.equal(torch.rand(16, generator=a), torch.rand(16, generator=b))


@pytest.fixture(scope="module")
def uninterrupted(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ddp_rng")
    draws = base / "draws"
    train_ssl(
        _ddp_config(cifar_root, base / "run", [{"_target_": "tests.callbacks.RecordFirstDraw", "out_dir": str(draws)}])
    )
    return base / "run", draws


def test_each_process_draws_its_own_augmentations(uninterrupted: tuple[Path, Path]) -> None:
    _, draws = uninterrupted
    first, second = (torch.load(draws / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert not torch.equal(first["crop"], second["crop"])  # slot i gets a different crop on each process
    for rank, record in enumerate((first, second)):  # and each stream is the documented one
        gen = new_generator(record["seed"], rank, torch.device("cpu"))
        from simclr.views.augment import SimCLRAugment

        expected = SimCLRAugment().sample_params(len(record["crop"]), 32, 32, torch.device("cpu"), gen).crop
        torch.testing.assert_close(record["crop"], expected, atol=0, rtol=0)


def test_two_process_run_stopped_mid_epoch_resumes_to_the_same_weights(
    uninterrupted: tuple[Path, Path], cifar_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with pytest.raises(Exception, match="crash at step 9"):  # in the middle of the second epoch
        train_ssl(_ddp_config(cifar_root, run, [{"_target_": "tests.callbacks.CrashAt", "step": 9}]))
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0 and saved["simclr_augment_rng"]["states"].shape[0] == 2
    train_ssl(_ddp_config(cifar_root, run, [], "ckpt_path=last"))
    reference, resumed = _weights(uninterrupted[0]), _weights(run)
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, atol=1e-6, rtol=0, msg=name)
