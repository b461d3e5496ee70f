"""Shuffled training batches cut from a split that lives on the training device.

The uint8 training split is 150 MB: it fits in any GPU's memory, so it is copied there once and every
batch is one indexing kernel with a permutation drawn on the device. No loader, no worker, no pinned
buffer and no per-step host-to-device copy; on the CPU the same code cuts batches from host memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class DeviceBatches:
    """Iterable of shuffled (images, labels, indices) batches, every tensor on `images.device`.

    Each epoch draws a permutation of the N images from a generator seeded by (seed, epoch), so all
    processes of a multi-process run draw the same permutation without communicating; process `rank`
    of `world_size` takes every `world_size`-th position from `rank` on (as DistributedSampler does), a
    disjoint shard reshuffled each epoch. The last incomplete batch is dropped (SimCLR's loss depends
    on the batch size). A resumed run draws the same permutations: they depend only on the seed and
    the epoch, which the Trainer restores, so there is no generator state to save.

    Args:
        images: uint8 (N, 3, H, W), on the device the batches should be on. labels: int64 (N,).
        batch_size: images per batch on this process. seed: the run's seed.
        epoch: returns the current epoch (the Trainer's); without it each `iter()` is the next epoch.
        ids: int64 (M,), the rows of the split to cover (the probe's training images without the
            validation set); None covers all N. The permutation is over these M rows.

    Yields: images uint8 (B, 3, H, W), labels int64 (B,), indices int64 (B,) into the whole split.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] | None = None,
        ids: torch.Tensor | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.images, self.labels = images, labels.to(images.device)
        self.ids = ids.to(images.device) if ids is not None else None
        self._rows = len(ids) if ids is not None else len(labels)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._epoch_fn = epoch
        self._iterations = 0

    def __len__(self) -> int:
        return (self._rows // self.world_size) // self.batch_size

    def permutation(self, epoch: int) -> torch.Tensor:
        """This process's shard of epoch `epoch`'s permutation, as rows of the whole split: int64
        (M // world_size,), on the device."""
        device = self.images.device
        gen = torch.Generator(device=device).manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self._rows, generator=gen, device=device)
        per_rank = len(order) // self.world_size
        shard = order[self.rank : per_rank * self.world_size : self.world_size]
        return self.ids[shard] if self.ids is not None else shard

    def next_epoch(self) -> int:
        """The epoch of the pass about to start: the Trainer's, or else the count of passes so far."""
        epoch = self._epoch_fn() if self._epoch_fn is not None else self._iterations
        self._iterations += 1
        return epoch

    def __iter__(self) -> Iterator[Batch]:
        shard = self.permutation(self.next_epoch())
        for i in range(len(self)):
            idx = shard[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx], idx


def mix_seed(seed: int, epoch: int) -> int:
    """One 63-bit generator seed per (seed, epoch), distinct for distinct pairs in practice."""
    return (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + 1) % (2**63 - 1)
