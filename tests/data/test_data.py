"""CIFAR-10 files -> uint8 tensors -> batches, and every way the files can be wrong."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.data import cifar as data_mod
from simclr.data.cifar import BatchUnpickler, load_split, read_batch_file
from simclr.data.datamodule import CIFAR10DataModule
from simclr.data.splits import validation_split
from simclr.errors import ConfigError, DataError
from tests.helpers import REAL_ROOT, RunsCode, write_cifar10


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


def test_a_batch_file_that_would_run_code_is_refused_before_any_of_it_runs(fresh_cifar_root: Path) -> None:
    path = fresh_cifar_root / "cifar-10-batches-py" / "data_batch_3"
    marker = fresh_cifar_root / "ran.txt"
    with open(path, "wb") as f:
        pickle.dump({"batch_label": "training batch 3 of 5", "data": RunsCode(f"open({str(marker)!r}, 'w')")}, f)
    with pytest.raises(DataError) as refused:
        load_split(fresh_cifar_root, train=True)
    assert str(refused.value) == (
        f"{path} was refused: loading it would build builtins.exec, which no CIFAR-10 python batch holds (a pickle "
        f"can run code as it loads; nothing of it ran); delete {path.parent} and rerun with data.download=true, "
        f"or copy a complete CIFAR-10 there"
    )
    assert not marker.exists()
    with open(path, "rb") as f:  # the same file, read as before: the payload does run
        pickle.load(f)
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(6))
def test_batches_re_pickled_with_any_protocol_load(fresh_cifar_root: Path, protocol: int) -> None:
    folder = fresh_cifar_root / "cifar-10-batches-py"
    before = load_split(fresh_cifar_root, train=True)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        with open(folder / name, "rb") as f:
            entry = pickle.load(f)
        entry["labels"] = np.asarray(entry["labels"]) if name == "data_batch_2" else entry["labels"]  # arrays too
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=protocol)
    after = load_split(fresh_cifar_root, train=True)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert load_split(fresh_cifar_root, train=False)[0].shape == (100, 3, 32, 32)


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 strings (SHORT_BINSTRING / BINSTRING), as the official CIFAR-10 files hold
    them, instead of Python 3's `_codecs.encode` calls."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def test_a_batch_in_the_official_python2_layout_loads(tmp_path: Path) -> None:
    """Protocol 2, Python 2 strings, and numpy 1.x's module name for the array reconstructor."""
    folder = write_cifar10(tmp_path, per_batch=3, test_size=3)
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f)
    with open(folder / "data_batch_1", "wb") as f:
        _Python2Pickler(f, protocol=2).dump({k.encode(): v for k, v in entry.items() if k in ("data", "labels")})
    raw = (folder / "data_batch_1").read_bytes()
    assert b"cnumpy._core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    (folder / "data_batch_1").write_bytes(raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    images, labels = read_batch_file(folder / "data_batch_1")
    assert np.array_equal(images.reshape(3, -1), entry["data"]) and labels.tolist() == entry["labels"]


def test_the_unpickler_allows_numpy_reconstruction_only() -> None:
    allowed = {f"{module}.{name}" for module, name in BatchUnpickler.ALLOWED}
    assert allowed == {
        "numpy.ndarray",
        "numpy.dtype",
        "_codecs.encode",
        *(f"numpy.{core}.multiarray._reconstruct" for core in ("core", "_core")),
        *(f"numpy.{core}.multiarray.scalar" for core in ("core", "_core")),
        *(f"numpy.{core}.numeric._frombuffer" for core in ("core", "_core")),
    }


def test_bytes_under_another_codec_are_refused(fresh_cifar_root: Path) -> None:
    path = fresh_cifar_root / "cifar-10-batches-py" / "test_batch"
    # protocol 2: _codecs.encode('x', 'rot13') where Python 3 writes bytes as _codecs.encode(<text>, 'latin1')
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DataError, match=r"test_batch is truncated or not a CIFAR-10 python batch \(UnpicklingError: "):
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


def _balanced_labels(per_class: int = 100, seed: int = 0) -> torch.Tensor:
    labels = torch.arange(10).repeat_interleave(per_class)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def test_validation_split_is_stratified_disjoint_and_fixed_by_the_seed() -> None:
    labels = _balanced_labels()
    split = validation_split(labels, 200, seed=0)
    assert torch.equal(torch.bincount(labels[split.val], minlength=10), torch.full((10,), 20))
    assert torch.equal(torch.bincount(labels[split.train], minlength=10), torch.full((10,), 80))
    assert not set(split.val.tolist()) & set(split.train.tolist())
    assert torch.equal(torch.cat([split.train, split.val]).sort().values, torch.arange(1000))
    again, other = validation_split(labels, 200, seed=0), validation_split(labels, 200, seed=1)
    assert torch.equal(again.val, split.val) and again.record() == split.record()
    assert len(set(other.val.tolist()) & set(split.val.tolist())) < 100  # another seed, another draw
    assert other.record()["val_indices_sha256"] != split.record()["val_indices_sha256"]
    assert split.record()["val_per_class"] == [20] * 10 and split.record()["selection"] == "val"


def test_validation_split_not_divisible_by_the_classes() -> None:
    labels = _balanced_labels()
    per_class = torch.bincount(labels[validation_split(labels, 25, seed=3).val], minlength=10)
    assert per_class.sum() == 25 and sorted(per_class.tolist()) == [2] * 5 + [3] * 5


def test_no_validation_split() -> None:
    split = validation_split(_balanced_labels(), 0, seed=0)
    assert len(split.val) == 0 and torch.equal(split.train, torch.arange(1000))
    assert split.record()["selection"] == "test"


@pytest.mark.parametrize(
    "val_size, message",
    [
        (1000, r"data\.val_size=1000 holds out all 1000 training images"),
        (5, r"data\.val_size=5 leaves classes without validation images"),
        (-1, r"data\.val_size=-1 must be an integer >= 0"),
        (30, r"data\.val_size=30 leaves class 3 without training images"),
    ],
)
def test_impossible_validation_sizes(val_size: int, message: str) -> None:
    labels = _balanced_labels()
    labels[labels == 3] = 4
    labels[:3] = 3  # class 3 has three images: holding out three leaves it none to train on
    with pytest.raises(ConfigError, match=message) as caught:
        validation_split(labels, val_size, seed=0)
    assert "\n" not in str(caught.value)


def test_datamodule_holds_out_validation_images(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, eval_batch_size=64, val_size=50, seed=0)
    dm.setup("fit")
    assert dm.monitor_split == "val"
    bank, queries = dm.val_dataloader()
    bank_idx, query_idx = (torch.cat([b[2] for b in loader]) for loader in (bank, queries))
    assert torch.equal(query_idx, dm.split.val) and torch.equal(bank_idx, dm.split.train)
    assert torch.bincount(dm.train_set.labels[query_idx], minlength=10).tolist() == [5] * 10
    for images, labels, idx in queries:  # batches carry indices into the training split
        assert torch.equal(images, dm.train_set.images[idx]) and torch.equal(labels, dm.train_set.labels[idx])
    # Pretraining trains on every image (no labels used), the validation images included.
    seen = torch.cat([b[2] for b in dm.train_dataloader()])
    assert len(seen) == 192 and set(seen.tolist()) & set(dm.split.val.tolist())
    # The probe trains on the rest only; its validation loader is the held-out set.
    probe = CIFAR10DataModule(str(cifar_root), batch_size=32, val_size=50, seed=0, purpose="probe")
    probe.setup("fit")
    for images, labels, idx in probe.train_dataloader():
        assert not set(idx.tolist()) & set(dm.split.val.tolist())
        assert torch.equal(images, dm.train_set.images[idx]) and torch.equal(labels, dm.train_set.labels[idx])
    assert len(probe.train_dataloader()) == 150 // 32
    (val,) = probe.val_dataloader()
    assert torch.equal(torch.cat([b[2] for b in val]), dm.split.val)


def test_datamodule_without_validation_monitors_on_test(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, val_size=0)
    dm.setup("fit")
    assert dm.monitor_split == "test" and dm.val_set is None
    bank, queries = dm.val_dataloader()
    assert sum(len(b[2]) for b in bank) == 200 and sum(len(b[2]) for b in queries) == 100
    probe = CIFAR10DataModule(str(cifar_root), batch_size=32, val_size=0, purpose="probe")
    probe.setup("fit")
    assert probe.val_dataloader() == []


def test_probe_batch_larger_than_what_is_left(cifar_root: Path) -> None:
    dm = CIFAR10DataModule(str(cifar_root), batch_size=180, val_size=50, purpose="probe", batch_key="probe.batch_size")
    with pytest.raises(
        DataError, match="probe.batch_size=180 exceeds the 150 training images left after data.val_size"
    ):
        dm.setup("fit")


@pytest.mark.skipif(not (REAL_ROOT / "cifar-10-batches-py").is_dir(), reason=f"real CIFAR-10 not in {REAL_ROOT}")
def test_real_cifar10_loads() -> None:
    images, labels = load_split(REAL_ROOT, train=True)
    assert images.shape == (50000, 3, 32, 32)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 5000))
    test_images, test_labels = load_split(REAL_ROOT, train=False)
    assert test_images.shape == (10000, 3, 32, 32)
    assert torch.equal(torch.bincount(test_labels), torch.full((10,), 1000))
