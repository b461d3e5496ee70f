"""CIFAR-10 as uint8 tensors in memory, and the LightningDataModule both training scripts share.

Batches are (images uint8 (B, 3, 32, 32), labels int64 (B,), indices int64 (B,)), the indices always
into the split the images come from (the training split or the test split), whatever subset a loader
covers. Training batches are cut on the training device from a copy of the images held there
(`DeviceBatches`); evaluation batches are cut from the in-memory tensors with one indexing operation per
batch (the dataset implements `__getitems__`). Neither does per-image Python work; augmentation happens
on the device, in the LightningModule. The one exception is the reference path,
`augmentation.backend=torchvision` (`views`): training batches are then two views per image made by
torchvision transforms in CPU workers (`simclr.data.per_image_batches`), in the same order.

Selection never sees the test split: `data.val_size` images of the labelled training split
(`validation_split`: stratified by class, fixed by the seed) are held out as the validation set. The
kNN monitor and the probe are validated on them; the test split is evaluated once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from simclr.data.cifar import NUM_CLASSES, download, load_split
from simclr.data.device_batches import DeviceBatches
from simclr.data.per_image_batches import PerImageBatches
from simclr.data.splits import ValidationSplit, validation_split
from simclr.errors import DataError


class TensorBatches(Dataset):
    """Images, labels and indices held as tensors; `__getitems__` returns a whole batch at once.

    With `ids`, the dataset is the subset of those rows (in that order) and reports each item's
    index into the full tensors, not its position in the subset; nothing is copied.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, labels
        self.ids = ids

    def __len__(self) -> int:
        return len(self.labels) if self.ids is None else len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        row = int(self.ids[i]) if self.ids is not None else i
        return self.images[row], self.labels[row], torch.tensor(row)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.ids is not None:
            idx = self.ids[idx]
        return self.images[idx], self.labels[idx], idx


def _keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """collate_fn for `TensorBatches.__getitems__`: the batch is already stacked."""
    return batch


PURPOSES = ("pretrain", "probe")


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 train and test splits as uint8 tensors (50,000 and 10,000 images, 150 MB together).

    `val_size` images of the training split are held out for validation (`validation_split`, from
    `seed`); the rest of the training split is `fit_set`. After `setup`: `train_set` (all training
    images), `fit_set`, `val_set` (None when val_size=0), `test_set`, and `split` (its `record()` goes
    into results and checkpoints).

    purpose "pretrain": training batches cover ALL training images (pretraining uses no labels, so the
        validation images may be seen unlabelled, as is usual); `val_dataloader` yields the two loaders
        of the kNN monitor, the bank (`fit_set`) then the queries (`val_set`); with val_size=0 the bank is
        the whole training split and the queries are the test split (`monitor_split` says which).
    purpose "probe": training batches cover `fit_set` only; `val_dataloader` yields `val_set` (nothing
        when val_size=0).

    `batch_size` is the number of images per step on one device (`batch_key` names the setting in
    errors). Training batches come from `DeviceBatches`: the images are copied once to the Trainer's
    device, shuffled there each epoch from `seed` and the epoch, sharded over processes, and the last
    incomplete batch is dropped (SimCLR's loss depends on the batch size). Evaluation loaders use
    `eval_batch_size`, keep dataset order and drop nothing.

    views: a per-image transform (PIL image -> float tensor) for the reference path
        (`augmentation.backend=torchvision`): training batches are then (view1, view2, labels, indices)
        made in `view_workers` CPU processes, in the same order as the device batches.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        batch_size: int = 512,
        eval_batch_size: int = 1024,
        num_workers: int = 0,
        pin_memory: bool = True,
        seed: int = 0,
        val_size: int = 0,
        purpose: str = "pretrain",
        batch_key: str = "data.batch_size",
        views: Callable[[Any], torch.Tensor] | None = None,
        view_workers: int = 2,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise DataError(f"{batch_key}={batch_size} and data.eval_batch_size={eval_batch_size} must be >= 1")
        if purpose not in PURPOSES:
            raise ValueError(f"purpose={purpose!r} is not one of {PURPOSES}")
        self.root, self.download = str(root), bool(download)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.seed, self.val_size, self.purpose, self.batch_key = int(seed), val_size, purpose, batch_key
        if views is not None and purpose != "pretrain":
            raise ValueError("per-image views (augmentation.backend=torchvision) are for pretraining only")
        self.views, self.view_workers = views, int(view_workers)
        self.train_set: TensorBatches | None = None
        self.fit_set: TensorBatches | None = None
        self.val_set: TensorBatches | None = None
        self.test_set: TensorBatches | None = None
        self.split: ValidationSplit | None = None
        self._train_batches: DeviceBatches | None = None
        self._train_batches_key: tuple | None = None

    @property
    def monitor_split(self) -> str:
        """Where the kNN monitor's queries come from: "val", or "test" when data.val_size=0."""
        return "val" if self.val_size else "test"

    def prepare_data(self) -> None:
        if self.download:
            download(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_split(self.root, train=True)
        split = validation_split(labels, self.val_size, self.seed, NUM_CLASSES)
        trained_on = len(labels) if self.purpose == "pretrain" else len(split.train)
        if self.batch_size > trained_on:
            what = "training images" if self.purpose == "pretrain" else "training images left after data.val_size"
            raise DataError(
                f"{self.batch_key}={self.batch_size} exceeds the {trained_on} {what} in {self.root}; "
                f"lower {self.batch_key}"
            )
        self.split = split
        self.train_set = TensorBatches(images, labels)
        self.fit_set = TensorBatches(images, labels, ids=split.train) if split.val_size else self.train_set
        self.val_set = TensorBatches(images, labels, ids=split.val) if split.val_size else None
        self.test_set = TensorBatches(*load_split(self.root, train=False))

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=_keep_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DeviceBatches | PerImageBatches:
        """Shuffled batches of this process's shard, on the Trainer's device (the CPU without a Trainer).

        Pretraining: all training images. Probe: the training images minus the validation set (the
        batches' indices are still indices into the training split). The images are copied to the
        device once; the same loader is returned while the Trainer, device, rank and world size stay,
        so without a Trainer each pass over it is the next epoch.
        """
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        key = (id(trainer), device, rank, world)
        if self._train_batches is None or self._train_batches_key != key:
            self._train_batches_key = key
            if self.views is not None:
                self._train_batches = self._per_image_batches(rank, world, trainer, device)
                return self._train_batches
            subset = self.purpose == "probe" and self.split.val_size > 0
            self._train_batches = DeviceBatches(
                self.train_set.images.to(device),
                self.train_set.labels.to(device),
                batch_size=self.batch_size,
                seed=self.seed,
                rank=rank,
                world_size=world,
                epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
                ids=self.split.train if subset else None,
            )
        return self._train_batches

    def _per_image_batches(
        self, rank: int, world: int, trainer: pl.Trainer | None, device: torch.device
    ) -> PerImageBatches:
        """The reference path: two views per image made by `self.views` in `view_workers` CPU processes."""
        return PerImageBatches(
            self.train_set.images,
            self.train_set.labels,
            self.views,
            batch_size=self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
            workers=self.view_workers,
            pin_memory=self.pin_memory and device.type == "cuda",
        )

    def val_dataloader(self) -> list[DataLoader]:
        """Pretraining: [kNN bank, kNN queries]. Probe: [validation set], or [] when data.val_size=0."""
        if self.purpose == "pretrain":
            return [self.bank_dataloader(), self.query_dataloader()]
        return [self._eval_loader(self.val_set)] if self.val_set is not None else []

    def bank_dataloader(self) -> DataLoader:
        """The kNN bank: the training split minus the validation set (all of it when data.val_size=0)."""
        return self._eval_loader(self.fit_set)

    def query_dataloader(self) -> DataLoader:
        """The kNN monitor's queries: the validation set, or the test split when data.val_size=0."""
        return self._eval_loader(self.val_set if self.val_set is not None else self.test_set)

    def train_eval_dataloader(self) -> DataLoader:
        """The whole training split in order, without dropping images: for features of every image."""
        return self._eval_loader(self.train_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        return self._loader(dataset, self.eval_batch_size, shuffle=False, drop_last=False)
