"""DeviceBatches: shuffled, sharded training batches cut on the device without host work."""

from __future__ import annotations

import torch

from simclr.data.device_batches import DeviceBatches
from simclr.training.profiling import count_ops

N = 103  # not a multiple of the world size or the batch: the remainders must be dropped


def _split() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(N, dtype=torch.uint8).view(N, 1, 1, 1).expand(N, 3, 4, 4).contiguous()
    return images, torch.arange(N) % 10


def _epoch(loader: DeviceBatches) -> torch.Tensor:
    return torch.cat([idx for _, _, idx in loader])


def test_batches_hold_the_images_and_labels_of_their_indices() -> None:
    images, labels = _split()
    loader = DeviceBatches(images, labels, batch_size=10, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == N // 10
    for x, y, idx in batches:
        assert x.shape == (10, 3, 4, 4) and x.dtype == torch.uint8
        assert torch.equal(x, images[idx]) and torch.equal(y, labels[idx])
    seen = _epoch(DeviceBatches(images, labels, batch_size=10, seed=0))
    assert len(seen.unique()) == 100  # no image twice in an epoch


def test_ranks_read_disjoint_shards_reshuffled_each_epoch() -> None:
    images, labels = _split()
    for epoch in range(3):
        shards = [
            _epoch(DeviceBatches(images, labels, batch_size=8, seed=5, rank=r, world_size=3, epoch=lambda e=epoch: e))
            for r in range(3)
        ]
        assert all(len(s) == (N // 3 // 8) * 8 for s in shards)
        together = torch.cat(shards)
        assert len(together.unique()) == len(together)  # disjoint
        if epoch == 0:
            first = shards[0]
        else:
            assert not torch.equal(shards[0], first)  # reshuffled


def test_the_permutation_depends_only_on_seed_and_epoch() -> None:
    """What makes resuming exact: a run restarted at epoch e draws what the uninterrupted run drew."""
    images, labels = _split()
    uninterrupted = DeviceBatches(images, labels, batch_size=10, seed=3)
    epochs = [_epoch(uninterrupted) for _ in range(3)]
    resumed = DeviceBatches(images, labels, batch_size=10, seed=3, epoch=lambda: 2)
    assert torch.equal(_epoch(resumed), epochs[2])
    assert not torch.equal(_epoch(DeviceBatches(images, labels, batch_size=10, seed=4, epoch=lambda: 2)), epochs[2])


def test_cutting_a_batch_makes_no_copy_through_the_host_and_no_synchronisation() -> None:
    images, labels = _split()
    loader = iter(DeviceBatches(images, labels, batch_size=10, seed=0))
    next(loader)  # the permutation is drawn with the first batch
    _, rec = count_ops(next, loader)
    assert rec.syncs == [] and "_to_copy" not in rec.ops
    assert rec.op_count <= 2  # one gather for the images, one for the labels


def test_a_subset_is_shuffled_alone_and_reported_by_its_rows_in_the_split() -> None:
    images, labels = _split()
    ids = torch.arange(0, N, 2)  # 52 rows: the probe's training images without a validation set
    loader = DeviceBatches(images, labels, batch_size=10, seed=0, ids=ids)
    batches = list(loader)
    assert len(batches) == len(loader) == 52 // 10
    for x, y, idx in batches:
        assert set(idx.tolist()) <= set(ids.tolist())
        assert torch.equal(x, images[idx]) and torch.equal(y, labels[idx])
    seen = torch.cat([idx for _, _, idx in batches])
    assert len(seen.unique()) == 50
