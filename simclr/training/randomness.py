"""Randomness per process: each process of a run draws its augmentations from its own generator.

Seeding every process with the same seed would give image slot i on every GPU the same crop, flip and
jitter as slot i on the others, so the views of a global batch would not be independent draws. Each
process therefore seeds its generator from (seed, global rank); every process's generator state is
gathered into each checkpoint, and each process takes its own back on resume.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from simclr.models.collectives import gather

log = logging.getLogger("simclr")
CHECKPOINT_KEY = "simclr_augment_rng"


def process_seed(seed: int, rank: int, salt: int = 0) -> int:
    """A 63-bit generator seed per (seed, rank, salt), distinct for distinct triples in practice."""
    return (seed * 0x9E3779B97F4A7C15 + (rank + 1) * 0xD1B54A32D192ED03 + salt * 0x94D049BB133111EB) % (2**63 - 1)


def new_generator(seed: int, rank: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(process_seed(seed, rank))


def gathered_states(module: pl.LightningModule, gen: torch.Generator) -> torch.Tensor:
    """Every process's generator state, uint8 (world_size, state bytes) on the CPU (a collective:
    every process must call it, as Lightning's checkpoint hooks do)."""
    state = gen.get_state()
    if module.trainer.world_size == 1:
        return state.unsqueeze(0)
    device = module.device if module.device.type == "cuda" else torch.device("cpu")  # NCCL needs CUDA tensors
    return gather(state.to(device).unsqueeze(0)).cpu()


def restore(gen: torch.Generator, saved: dict, seed: int, rank: int, world_size: int, step: int) -> None:
    """Puts this process's saved state back into `gen`; a run resumed on another number of processes
    cannot replay the saved streams, so it draws fresh ones, seeded by the step it resumes at."""
    states = saved["states"]
    if len(states) == world_size:
        gen.set_state(states[rank].clone())
        return
    log.warning(
        "the checkpoint holds augmentation generators of %d processes and this run has %d: "
        "each process starts a fresh stream (the resumed run is not a replay of the original)",
        len(states),
        world_size,
    )
    gen.manual_seed(process_seed(seed, rank, salt=step + 1))
