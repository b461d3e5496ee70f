"""CIFAR-10 files on disk: the standard python batches read into uint8 tensors, and the download.

`cifar-10-batches-py/` holds pickled dicts; `BatchUnpickler` admits only the builtins and numpy types
those files use, so a file that is not what it claims cannot run code. `load_split` gives images uint8
(N, 3, 32, 32) and labels int64 (N,). CIFAR10_MEAN and CIFAR10_STD are the training split's per-channel
statistics in [0, 1] units, used by both view pipelines and by exported encoders.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simclr.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as a pickle may use it: Python 3 writes bytes under protocols 0-2 as
    `_codecs.encode(<text>, "latin1")`; any other codec is refused rather than looked up."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}, where pickles write 'latin1'")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals that pickles of numpy arrays and scalars name, mapped to numpy's own functions.

    Asked of numpy itself (how it pickles an array with protocols 2 and 5, and a scalar), and listed under
    the module names numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) write, so that files pickled by either
    load (the official batches name `numpy.core.multiarray._reconstruct`), and `_codecs.encode`, with which
    Python 3 writes bytes under protocols 0-2 (`_latin1_bytes`).
    """
    array = np.zeros(1, np.uint8)
    reconstruct, frombuffer, scalar = array.__reduce__()[0], array.__reduce_ex__(5)[0], np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 python batch, building nothing a batch does not hold.

    A pickle can name any importable callable and call it while it loads (that is how it rebuilds objects),
    so a data file could run code. Dicts, lists, tuples, strings, bytes and numbers need no global;
    `find_class` hands out numpy's array and scalar reconstruction (`_numpy_globals`) and refuses every other
    name with a DataError before anything is built or called.
    """

    ALLOWED = _numpy_globals()

    def __init__(self, file: Any, path: Path, fix: str) -> None:
        # latin1: Python 2 strings (the official files' keys and array bytes) decode one byte per character.
        super().__init__(file, encoding="latin1")
        self.path, self.fix = path, fix

    def find_class(self, module: str, name: str) -> Any:
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise DataError(
                f"{self.path} was refused: loading it would build {module}.{name}, which no CIFAR-10 python batch "
                f"holds (a pickle can run code as it loads; nothing of it ran); {self.fix}"
            )
        return found


def read_batch_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> images uint8 (N, 3, 32, 32), labels int64 (N,).

    Read with `BatchUnpickler` (no code runs), then checked for structure and shapes instead of the official
    md5 sums, so re-pickled copies (any protocol, subsets) load too.
    """
    fix = f"delete {path.parent} and rerun with data.download=true, or copy a complete CIFAR-10 there"
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, path, fix).load()
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


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
