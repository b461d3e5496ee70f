"""What a checkpoint of this project carries, and finding, reading and loading one with errors that name the fix.

Every checkpoint written by `train_ssl.py` or `train_linear.py` holds, besides Lightning's own keys,
`simclr_kind` ("pretrain" or "probe") and `simclr_config` (the resolved run config, plain containers),
so an encoder can be rebuilt without the user repeating any model option.

Every entry point that takes a checkpoint (`train_linear.py ckpt=`, `python -m simclr.jobs.export ckpt=`,
`train_ssl.py ckpt_path=`, `simclr.load_encoder`) finds it with `find_checkpoint` (a file, or a run
directory) and reads it with `read_checkpoint`. A file that does not read is described from its own bytes
(`describe_damage`) and the error names the newest intact checkpoint beside it (`newest_intact`), for every
reader alike; what resuming does with a damaged checkpoint is simclr/training/resume.py's.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from simclr.errors import CheckpointError, DamagedCheckpointError
from simclr.models.nets import CifarResNet, build_encoder
from simclr.storage import human
from simclr.training.precision import choose_precision

KIND_KEY = "simclr_kind"
CONFIG_KEY = "simclr_config"
# {"precision": "bf16-mixed", "precision_reason": "..."}: the run's choice (simclr/training/precision.py).
PRECISION_KEY = "simclr_precision"
KIND_NAMES = {"pretrain": "pretraining", "probe": "probe"}


class ConfigInCheckpoint(pl.Callback):
    """Adds the run's resolved config, kind and precision to every checkpoint Lightning writes."""

    def __init__(self, config: dict[str, Any], kind: str) -> None:
        self.config, self.kind = config, kind

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[KIND_KEY] = self.kind
        checkpoint[PRECISION_KEY] = choose_precision(self.config.get("trainer", {})).record()


def checkpoint_in(folder: Path) -> Path | None:
    """The checkpoint a run directory holds: <folder>/checkpoints/last.ckpt, else the newest
    <folder>/checkpoints/*.ckpt; for a folder without checkpoints/, its own last.ckpt or newest *.ckpt.
    None when there is none."""
    if (folder / "checkpoints").is_dir():
        folder = folder / "checkpoints"
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def find_checkpoint(path: str | Path, arg: str = "ckpt") -> Path:
    """The checkpoint file `path` names: a file (or a missing path) as given, a run directory's checkpoint
    (see `checkpoint_in`). A missing file is reported by `read_checkpoint`; `arg` is the option the error
    names (`ckpt`, or `ckpt_path` for resuming)."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = checkpoint_in(path)
    if found is None:
        raise CheckpointError(
            f"{arg}={path} is a directory without checkpoints/last.ckpt or any other .ckpt file; pass the "
            f"checkpoint file itself, e.g. {arg}={path}/checkpoints/<name>.ckpt, or the directory of a pretraining run"
        )
    return found


# What `export_form` calls each encoder export, in error messages.
EXPORT_FORMS = {"safetensors": "a safetensors file", "pt2": "an ExportedProgram (.pt2) file"}


def export_form(path: Path) -> str | None:
    """The encoder export `path` is, by its bytes: "safetensors", "pt2" (torch.export's archive), or None.

    By content, not name: a renamed export is still told apart from a checkpoint.
    """
    if zipfile.is_zipfile(path):
        try:  # torch.export.save writes <root>/archive_format = "pt2"; torch.save archives have no such file
            with zipfile.ZipFile(path) as z:
                formats = [z.read(n) for n in z.namelist() if n.endswith("/archive_format")]
        except zipfile.BadZipFile:
            return None
        return "pt2" if b"pt2" in formats else None
    # safetensors: an 8-byte little-endian header length, then that many bytes of JSON.
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size - 8:
        return "safetensors"
    return None


def read_checkpoint(path: str | Path, expect: str = "pretrain", arg: str = "ckpt") -> dict[str, Any]:
    """Loads a checkpoint file on the CPU and checks it is this project's checkpoint of kind `expect`.

    A file that cannot be read raises DamagedCheckpointError, which says what is wrong with it and names
    the newest intact checkpoint beside it (`arg`: the option that passes one, in the fix).
    """
    path = Path(path)
    if not path.is_file():
        hint = "" if path.suffix == ".ckpt" else " (checkpoints end in .ckpt)"
        raise CheckpointError(
            f"checkpoint {path} does not exist{hint}; pretraining writes them to <run dir>/checkpoints/, "
            f"e.g. ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt"
        )
    if (form := export_form(path)) is not None:
        raise CheckpointError(
            f"{path} is {EXPORT_FORMS[form]}, not a {KIND_NAMES[expect]} checkpoint; pass "
            f"ckpt=<run dir>/checkpoints/last.ckpt (an export's export.json names the checkpoint it came from)"
        )
    try:
        ckpt = _load(path)
    except Exception as e:  # torch.load fails in many ways on damaged or foreign bytes (EOFError, KeyError, ...)
        raise damaged_checkpoint_error(path, e, expect, arg) from e
    kind = ckpt.get(KIND_KEY) if isinstance(ckpt, dict) else None
    if kind is None or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a checkpoint of this project (no '{KIND_KEY}' entry); "
            f"pass a .ckpt written by train_ssl.py"
        )
    if kind != expect:
        raise CheckpointError(
            f"{path} is a {kind} checkpoint, but a {expect} checkpoint is needed here; "
            + (
                "pass the pretraining checkpoint the probe was trained on (<ssl run>/checkpoints/last.ckpt)"
                if kind == "probe"
                else "pass a checkpoint written by train_ssl.py"
            )
        )
    return ckpt


def _load(path: Path) -> Any:
    # weights_only: tensors and plain containers only, so that loading a checkpoint cannot run code.
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_checkpoint(ckpt: Any, expect: str) -> bool:
    return isinstance(ckpt, dict) and ckpt.get(KIND_KEY) == expect and CONFIG_KEY in ckpt and "state_dict" in ckpt


def damaged_checkpoint_error(path: Path, error: BaseException, expect: str, arg: str) -> DamagedCheckpointError:
    """The error for a checkpoint torch.load could not read: what is wrong with it (`describe_damage`), and
    the newest intact checkpoint of kind `expect` in the same folder, if there is one."""
    damage = describe_damage(path, error)
    damaged, intact, epoch = newest_intact(path.parent, expect, skip=path)
    if intact is None:
        fix = "no intact checkpoint is beside it; pass a .ckpt file written by train_ssl.py"
    else:
        fix = f"the newest intact checkpoint beside it is {intact} (end of epoch {epoch}): pass {arg}={intact}"
    message = f"{path} is not a readable PyTorch checkpoint: {damage}; {fix}"
    return DamagedCheckpointError(message, path, damage, [path, *damaged], intact, epoch)


def newest_intact(
    folder: Path, expect: str = "pretrain", skip: Path | None = None
) -> tuple[list[Path], Path | None, int | None]:
    """The newest checkpoint of kind `expect` in `folder` that reads (by modification time; `skip` left out).

    Returns (the newer *.ckpt files that do not read, newest first; that checkpoint or None; its epoch index).
    Files that read but are of another kind are passed over, not counted as damaged.
    """
    candidates = [p for p in folder.glob("*.ckpt") if p != skip and p.is_file()] if folder.is_dir() else []
    damaged = []
    for candidate in sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            ckpt = _load(candidate)
        except Exception:  # noqa: BLE001  (any failure to read is damage, as in read_checkpoint)
            damaged.append(candidate)
            continue
        if _is_checkpoint(ckpt, expect):
            return damaged, candidate, ckpt.get("epoch")
    return damaged, None, None


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def describe_damage(path: Path, error: BaseException) -> str:
    """What is wrong with a file torch.load refused, in this project's words, from the file's own bytes
    (torch's messages speak of its archive reader's internals)."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes; the write never reached the disk)"
    if _all_zero(path):
        return f"its {human(size)} are all zero bytes (the data never reached the disk, e.g. a crash or power loss)"
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        return "its bytes are not a PyTorch archive (text, or another program's format)"
    if not zipfile.is_zipfile(path):
        return f"it is truncated (a PyTorch archive cut off at {human(size)}: an interrupted write or copy)"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # the first entry whose bytes fail their CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return "it is damaged (its archive cannot be read through)"
    if bad is not None:
        return f"it is damaged (the archive's {bad} does not match its checksum)"
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects that checkpoints never hold (refused unread: loading them could run code)"
    return "it is a whole archive, but not one PyTorch wrote as a checkpoint"


def _all_zero(path: Path, chunk: int = 1 << 20) -> bool:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if block.count(0) != len(block):
                return False
    return True


def load_pretrained_encoder(path: str | Path) -> tuple[CifarResNet, dict[str, Any]]:
    """Rebuilds the encoder of a pretraining checkpoint (a file or a run directory) from the config stored in it.

    Returns (encoder with the checkpoint's weights, the checkpoint's resolved run config).
    """
    path = find_checkpoint(path)
    ckpt = read_checkpoint(path, expect="pretrain")
    return encoder_from_checkpoint(ckpt, path), ckpt[CONFIG_KEY]


def encoder_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> CifarResNet:
    """The encoder of a pretraining checkpoint already read with `read_checkpoint` (`path` names it in errors)."""
    prefix = "encoder."
    weights = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    return load_weights(build_encoder(**ckpt[CONFIG_KEY]["model"]), weights, path, "its config")


def load_weights(
    encoder: CifarResNet, weights: dict[str, torch.Tensor], path: str | Path, named_by: str
) -> CifarResNet:
    """`encoder` (built from the arch and width that `named_by` in `path` names) holding `weights`, its state dict.

    Raises CheckpointError naming the first mismatching key when the weights are another network's.
    """
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or misshapen:
        first = (missing or unexpected or misshapen)[0]
        raise CheckpointError(
            f"the encoder weights in {path} do not match the architecture {named_by} names "
            f"(model.arch={encoder.arch}, width={encoder.width}): "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} of another shape "
            f"(first: {first}); the file was edited or written by other code; pass an unmodified one"
        )
    encoder.load_state_dict(weights)
    return encoder


class SplitInCheckpoint(pl.Callback):
    """Adds the data module's validation split record to the config stored in every checkpoint.

    Put it after `ConfigInCheckpoint` in the callbacks (it extends `simclr_config` with `split`).
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        split = getattr(trainer.datamodule, "split", None)
        if split is not None and isinstance(checkpoint.get(CONFIG_KEY), dict):
            checkpoint[CONFIG_KEY] = {**checkpoint[CONFIG_KEY], "split": split.record()}
