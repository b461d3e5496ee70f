"""Augmentation randomness per process: independent across DDP processes, and resumed exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from simclr.jobs.train_ssl import train_ssl
from simclr.training.randomness import new_generator, process_seed
from simclr.views.augment import SimCLRAugment
from tests.helpers import ssl_config


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_process_seeds_differ_by_rank_and_seed() -> None:
    seeds = {process_seed(s, r) for s in range(4) for r in range(8)}
    assert len(seeds) == 32
    a, b = new_generator(0, 0, torch.device("cpu")), new_generator(0, 1, torch.device("cpu"))
    assert not torch.equal(torch.rand(16, generator=a), torch.rand(16, generator=b))


def test_each_process_draws_its_own_augmentations(ddp_run: tuple[Path, Path]) -> None:
    """tests/conftest.py's ddp_run: its two processes' first crop boxes (tests.callbacks.RecordFirstDraw)."""
    _, draws = ddp_run
    first, second = (torch.load(draws / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert not torch.equal(first["crop"], second["crop"])  # slot i gets a different crop on each process
    for rank, record in enumerate((first, second)):  # and each stream is the documented one
        gen = new_generator(record["seed"], rank, torch.device("cpu"))
        expected = SimCLRAugment().sample_params(len(record["crop"]), 32, 32, torch.device("cpu"), gen).crop
        torch.testing.assert_close(record["crop"], expected, atol=0, rtol=0)


def test_two_process_run_resumed_from_its_first_epoch_ends_with_the_same_weights(
    ddp_run: tuple[Path, Path], cifar_root: Path, tmp_path: Path
) -> None:
    """ddp_run's epoch0000.ckpt, what a run stopped in its second epoch leaves (last.ckpt of the last complete
    epoch): it holds both processes' augmentation streams, and resuming from it replays the second epoch's
    draws on each process exactly."""
    run, _ = ddp_run
    start = run / "checkpoints" / "epoch0000.ckpt"
    saved = torch.load(start, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0 and saved["simclr_augment_rng"]["states"].shape[0] == 2
    resumed = tmp_path / "resumed"
    overrides = ["trainer=ddp_sim", "data.val_size=51", "trainer.check_val_every_n_epoch=100", f"ckpt_path={start}"]
    train_ssl(ssl_config(cifar_root, resumed, overrides))
    reference, got = _weights(run), _weights(resumed)
    for name, value in reference.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)
