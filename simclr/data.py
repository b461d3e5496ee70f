"""CIFAR-10 as uint8 tensors in memory, and the LightningDataModule both training scripts share.

Batches are (images uint8 (B, 3, 32, 32), labels int64 (B,), indices int64 (B,)). Training batches are
cut on the training device from a copy of the split held there (`DeviceBatches`); evaluation batches are
cut from the in-memory tensors with one indexing operation per batch (the dataset implements
`__getitems__`). Neither does per-image Python work; augmentation happens on the device, in the
LightningModule.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from simclr.device_batches import DeviceBatches
from simclr.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)


def read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> images uint8 (N, 3, 32, 32), labels int64 (N,).

    Checks structure and shapes instead of the official md5 sums, so re-pickled copies load too.
    """
    fix = f"delete {path.parent} and rerun with data.download=true, or copy a complete CIFAR-10 there"
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{path} is truncated or not a CIFAR-10 python batch ({type(e).__name__}: {e}); {fix}") from e
    if not isinstance(entry, dict) or "data" not in entry or not ({"labels", "fine_labels"} & set(entry)):
        raise DataError(f"{path} is not a CIFAR-10 python batch (expected a dict with 'data' and 'labels'); {fix}")
    data = np.asarray(entry["data"])
    labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        raise DataError(
            f"{path} holds data of shape {data.shape} and dtype {data.dtype}; CIFAR-10 rows are "
            f"uint8 of length 3072 (3 x 32 x 32); {fix}"
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES)):
        raise DataError(f"{path} has {labels.size} labels for {data.shape[0]} images, or labels outside 0..9; {fix}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def load_split(root: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Reads the train (data_batch_1..5) or test split under root/cifar-10-batches-py/."""
    folder = Path(root) / FOLDER
    files = TRAIN_FILES if train else TEST_FILES
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 files {missing} are missing in {folder}; set data.download=true to fetch them, "
            f"or data.root=DIR where DIR/{FOLDER}/ holds the standard python batches"
        )
    parts = [read_batch_file(folder / name) for name in files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return images, labels


def download(root: str | Path) -> None:
    """Fetches CIFAR-10 with torchvision's downloader when root/cifar-10-batches-py/ does not exist.

    A folder that exists but is incomplete is never touched: the caller reports what is missing.
    """
    folder = Path(root) / FOLDER
    if folder.exists():
        return
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network failures come in many types (URLError, OSError, RuntimeError)
        raise DataError(
            f"downloading CIFAR-10 into {root} failed ({type(e).__name__}: {e}); check the network, "
            f"or place the standard {FOLDER}/ there yourself"
        ) from e


class TensorBatches(Dataset):
    """Images, labels and indices held as tensors; `__getitems__` returns a whole batch at once."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i], torch.tensor(i)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.images[idx], self.labels[idx], idx


def _keep_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """collate_fn for `TensorBatches.__getitems__`: the batch is already stacked."""
    return batch


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 train and test splits as uint8 tensors (50,000 and 10,000 images, 150 MB together).

    `batch_size` is the number of images per step on one device. Training batches come from
    `DeviceBatches`: the split is copied once to the Trainer's device, shuffled there each epoch from
    `seed` and the epoch, sharded over processes, and the last incomplete batch is dropped (SimCLR's
    loss depends on the batch size). Evaluation loaders use `eval_batch_size`.
    `val_dataloader` yields two loaders, the unshuffled train split then the test split, which is what
    a kNN monitor needs (train features as the memory bank, test features as queries).
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
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise DataError(f"data.batch_size={batch_size} and data.eval_batch_size={eval_batch_size} must be >= 1")
        self.root, self.download = str(root), bool(download)
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.seed = int(seed)
        self.train_set: TensorBatches | None = None
        self._train_batches: DeviceBatches | None = None
        self._train_batches_key: tuple | None = None
        self.test_set: TensorBatches | None = None

    def prepare_data(self) -> None:
        if self.download:
            download(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = TensorBatches(*load_split(self.root, train=True))
            self.test_set = TensorBatches(*load_split(self.root, train=False))
            if self.batch_size > len(self.train_set):
                raise DataError(
                    f"data.batch_size={self.batch_size} exceeds the {len(self.train_set)} training images "
                    f"in {self.root}; lower data.batch_size"
                )

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

    def train_dataloader(self) -> DeviceBatches:
        """Shuffled batches of this process's shard, on the Trainer's device (the CPU without a Trainer).

        The split is copied to the device once; the same loader is returned while the Trainer,
        device, rank and world size stay, so without a Trainer each pass over it is the next epoch.
        """
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        key = (id(trainer), device, rank, world)
        if self._train_batches is None or self._train_batches_key != key:
            self._train_batches_key = key
            self._train_batches = DeviceBatches(
                self.train_set.images.to(device),
                self.train_set.labels.to(device),
                batch_size=self.batch_size,
                seed=self.seed,
                rank=rank,
                world_size=world,
                epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
            )
        return self._train_batches

    def val_dataloader(self) -> list[DataLoader]:
        return [self.train_eval_dataloader(), self.test_dataloader()]

    def train_eval_dataloader(self) -> DataLoader:
        """The training split in order, without dropping images: for features and kNN banks."""
        return self._loader(self.train_set, self.eval_batch_size, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False, drop_last=False)
