"""CIFAR-10 files -> uint8 tensors -> batches, and every way the files can be wrong."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from simclr import data as data_mod
from simclr.data import CIFAR10DataModule, load_split, read_batch_file
from simclr.errors import DataError
from tests.conftest import write_cifar10


def test_splits_load_as_uint8_tensors(cifar_root: Path) -> None:
    images, labels = load_split(cifar_root, train=True)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (200,) and labels.dtype == torch.int64
    test_images, _ = load_split(cifar_root, train=False)
    assert test_images.shape == (100, 3, 32, 32)


def test_rows_are_channel_planes(tmp_path: Path) -> None:
    """A row is R(1024) G(1024) B(1024), each plane row-major, as the official files."""
    folder = write_cifar10(tmp_path, per_batch=2, test_size=2)
    entry = pickle.load(open(folder / "data_batch_1", "rb"))
    images = torch.from_numpy(read_batch_file(folder / "data_batch_1")[0])
    row = torch.from_numpy(entry["data"][1])
    assert torch.equal(images[1, 0].flatten(), row[:1024])
    assert torch.equal(images[1, 2, 31, 31], row[3071])


def test_datamodule_batches(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=64, eval_batch_size=50)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 200 // 64  # the incomplete last batch is dropped
    images, labels, indices = batches[0]
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(dm.train_set.images[indices], images) and torch.equal(dm.train_set.labels[indices], labels)
    train_eval, test = dm.val_dataloader()
    assert sum(len(b[0]) for b in train_eval) == 200 and sum(len(b[0]) for b in test) == 100
    ordered = torch.cat([b[2] for b in train_eval])
    assert torch.equal(ordered, torch.arange(200))


def test_shuffles_each_epoch(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=64)
    dm.setup("fit")
    first = torch.cat([b[2] for b in dm.train_dataloader()])
    second = torch.cat([b[2] for b in dm.train_dataloader()])
    assert not torch.equal(first, second)


def test_missing_files_without_download(tmp_path: Path) -> None:
    dm = CIFAR10DataModule(str(tmp_path / "nowhere"), download=False)
    dm.prepare_data()
    with pytest.raises(DataError, match=r"missing in .*nowhere.*data.download=true"):
        dm.setup("fit")


def test_download_uses_torchvision_when_folder_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeCIFAR10:  # stands in for the network: writes what the real download extracts
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            write_cifar10(Path(root))

    monkeypatch.setattr("torchvision.datasets.CIFAR10", FakeCIFAR10)
    dm = CIFAR10DataModule(str(tmp_path), download=True, batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    assert calls == [(str(tmp_path), True)]
    assert len(dm.train_set) == 200


def test_existing_files_are_never_downloaded_again(fresh_cifar_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files that exist are read as they are, whatever their md5 (re-pickled copies are fine)."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloader called although the files exist")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", fail)
    (fresh_cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    dm = CIFAR10DataModule(str(fresh_cifar_root), download=True)
    dm.prepare_data()
    with pytest.raises(DataError, match=r"\['data_batch_3'\] are missing"):
        dm.setup("fit")


def test_download_failure_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(DataError, match="downloading CIFAR-10 into .* failed .*network is unreachable"):
        data_mod.download(tmp_path)


def test_truncated_batch_file(fresh_cifar_root: Path) -> None:
    path = fresh_cifar_root / "cifar-10-batches-py" / "data_batch_2"
    os.truncate(path, path.stat().st_size // 2)
    size = path.stat().st_size
    with pytest.raises(DataError, match=r"data_batch_2 is truncated or not a CIFAR-10 python batch"):
        load_split(fresh_cifar_root, train=True)
    assert path.stat().st_size == size  # nothing is deleted or rewritten


def test_foreign_batch_file(fresh_cifar_root: Path) -> None:
    (fresh_cifar_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="test_batch is truncated or not a CIFAR-10 python batch"):
        load_split(fresh_cifar_root, train=False)


def test_pickle_of_something_else(fresh_cifar_root: Path) -> None:
    with open(fresh_cifar_root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(DataError, match="not a CIFAR-10 python batch .*'data' and 'labels'"):
        load_split(fresh_cifar_root, train=False)


@pytest.mark.parametrize(
    "data, labels, message",
    [
        (lambda np: np.zeros((4, 1024), np.uint8), [0] * 4, r"shape \(4, 1024\)"),
        (lambda np: np.zeros((4, 3072), np.float32), [0] * 4, "dtype float32"),
        (lambda np: np.zeros((4, 3072), np.uint8), [0] * 3, "3 labels for 4 images"),
        (lambda np: np.zeros((4, 3072), np.uint8), [0, 1, 2, 10], "labels outside 0..9"),
    ],
)
def test_wrong_shapes(fresh_cifar_root: Path, data, labels, message: str) -> None:
    import numpy as np

    with open(fresh_cifar_root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": data(np), "labels": labels}, f)
    with pytest.raises(DataError, match=message):
        load_split(fresh_cifar_root, train=True)


def test_batch_larger_than_dataset(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=512)
    with pytest.raises(DataError, match="data.batch_size=512 exceeds the 200 training images"):
        dm.setup("fit")


REAL_ROOT = Path(os.environ.get("CIFAR10_ROOT", Path(__file__).resolve().parents[1] / "data"))


@pytest.mark.skipif(not (REAL_ROOT / "cifar-10-batches-py").is_dir(), reason=f"real CIFAR-10 not in {REAL_ROOT}")
def test_real_cifar10_loads() -> None:
    images, labels = load_split(REAL_ROOT, train=True)
    assert images.shape == (50000, 3, 32, 32)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 5000))
    test_images, test_labels = load_split(REAL_ROOT, train=False)
    assert test_images.shape == (10000, 3, 32, 32)
    assert torch.equal(torch.bincount(test_labels), torch.full((10,), 1000))
