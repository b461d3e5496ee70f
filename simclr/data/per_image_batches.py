"""Training batches of two views per image made in DataLoader workers: the torchvision reference path.

With `augmentation.backend=torchvision` each view is made by a per-image transform
(`simclr.views.torchvision_reference`) in CPU worker processes. The images are walked in the same order as
`DeviceBatches` walks them (the same per-epoch permutation, the same shards per process), so the two
backends differ only in how a view is computed. It is the slow path: every view is several PIL and
tensor calls on one 32 x 32 image (docs/benchmarks.md has the measured cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from simclr.data.device_batches import DeviceBatches, mix_seed

Views = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class TwoViews(Dataset):
    """Two independently transformed views of each image.

    Args: images uint8 (N, 3, H, W), labels int64 (N,), transform: PIL image -> float tensor.
    Item i: (view1 float32 (3, H', W'), view2, label int64 (), i int64 ()).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[[Image.Image], Any]) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3): what PIL reads
        self.labels, self.transform = labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Views:
        img = Image.fromarray(np.ascontiguousarray(self.images[i]))
        return self.transform(img), self.transform(img), self.labels[i], torch.tensor(i)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of image indices in `DeviceBatches`' order: the same permutation per (seed, epoch), the
    same shard per process, the last incomplete batch dropped."""

    def __init__(self, order: DeviceBatches) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[list[int]]:
        shard = self.order.permutation(self.order.next_epoch()).tolist()
        size = self.order.batch_size
        for i in range(len(self)):
            yield shard[i * size : (i + 1) * size]


class PerImageBatches:
    """Iterable of (view1, view2, labels, indices) batches from `TwoViews` in `workers` processes.

    Not a DataLoader itself, so Lightning does not replace its sampler under DDP: the sampler
    shards by rank already. Workers persist across epochs and are seeded from (seed, rank), so a run
    started from scratch draws the same views again; a resumed run draws new ones (the workers'
    generators are not checkpointed).

    Yields: view1, view2 float32 (B, 3, H, W), labels int64 (B,), indices int64 (B,), on the CPU.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[Image.Image], Any],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] | None = None,
        workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        order = DeviceBatches(images, labels, batch_size, seed, rank, world_size, epoch)
        self.loader = DataLoader(
            TwoViews(images, labels, transform),
            batch_sampler=EpochBatchSampler(order),
            num_workers=workers,
            pin_memory=pin_memory,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(mix_seed(seed, 1_000_003 + rank)),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Views]:
        return iter(self.loader)
