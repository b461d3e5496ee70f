"""`load_encoder`: the encoder back from every form this project writes, with one-line errors that name the fix.

The forms it reads: a pretraining checkpoint (.ckpt), a run directory (its checkpoints/last.ckpt or newest
*.ckpt), an export directory (`python -m simclr.jobs.export`, or the export/ inside a run directory), or one
export file: encoder.pt2, encoder.safetensors, or encoder_torchvision.pt with the export.json beside it.

Every form gives a `CifarResNet` of the architecture and width recorded with the weights (the checkpoint's
stored config, the export's record), never guessed from the tensors' shapes. It maps images
(B, 3, 32, 32) float32, each channel normalised as (x / 255 - mean) / std with the CIFAR-10 statistics, to
features (B, feature_dim) after global average pooling.

Reading is apart from writing (simclr/jobs/export.py): it needs none of the writer's machinery (tracing with
torch.export, W&B), and both take the file names and the record from simclr/jobs/export_format.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from simclr.errors import CheckpointError, first_line
from simclr.jobs.export_format import (
    EXPORT_FORMAT,
    JSON_FILE,
    PT2_FILE,
    PT2_RECORD,
    SAFETENSORS_FILE,
    TORCHVISION_FILE,
)
from simclr.models.nets import CifarResNet
from simclr.training.checkpoints import KIND_KEY, checkpoint_in, export_form, load_pretrained_encoder, load_weights

_FIX = (
    "pass a pretraining checkpoint of this project (<run dir>/checkpoints/last.ckpt), its run directory, "
    "or a file written by `python -m simclr.jobs.export`"
)


def load_encoder(path: str | Path, trainable: bool = False, device: str | torch.device = "cpu") -> CifarResNet:
    """The encoder of a pretraining checkpoint or of an export, ready to use.

    Args:
        path: a pretraining .ckpt of this project, a run directory (`simclr.training.checkpoints.checkpoint_in`), an
            export directory, or one of its files (encoder.pt2, encoder.safetensors, encoder_torchvision.pt).
        trainable: False: frozen (eval mode, no parameter requires grad), for features;
            True: train mode with gradients, for fine-tuning.
        device: where the weights go.

    Returns a `CifarResNet` of the architecture and width the checkpoint's config or the export's record names,
    mapping normalised images (B, 3, 32, 32) float32 (see this module's docstring) to features (B, feature_dim).
    Raises CheckpointError (one line: the path and the fix) for anything else.
    """
    encoder = _load_file(_encoder_file(Path(path)))
    encoder.to(device)
    encoder.train(trainable)
    encoder.requires_grad_(trainable)
    return encoder


def _encoder_file(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; {_FIX}")
    if path.is_file():
        return path
    if (ckpt := checkpoint_in(path)) is not None:
        return ckpt
    for folder in (path, path / "export"):
        for name in (PT2_FILE, SAFETENSORS_FILE, TORCHVISION_FILE):
            if (folder / name).is_file():
                return folder / name
    raise CheckpointError(
        f"{path} is a directory with no encoder in it (no checkpoints/*.ckpt, *.ckpt, {PT2_FILE} or "
        f"{SAFETENSORS_FILE}); {_FIX}"
    )


def _load_file(file: Path) -> CifarResNet:
    """The .pt2 and safetensors forms are told by their bytes (renamed, they still load); the rest by torch.load."""
    form = export_form(file)
    if form == "pt2":
        return _load_program(file)
    if form == "safetensors":
        return _load_safetensors(file)
    if file.suffix == ".ckpt":  # read once, by read_checkpoint, which names a probe or foreign checkpoint
        return load_pretrained_encoder(file)[0]
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways on foreign bytes (UnpicklingError, EOFError, ...)
        raise CheckpointError(
            f"{file} is not a readable checkpoint or encoder export, perhaps truncated or of another program "
            f"({type(e).__name__}: {first_line(e)}); {_FIX}"
        ) from e
    if isinstance(obj, dict) and (KIND_KEY in obj or "state_dict" in obj):  # a checkpoint under another name
        return load_pretrained_encoder(file)[0]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _load_torchvision_form(obj, file)
    raise CheckpointError(f"{file} is a PyTorch file but holds no encoder of this project; {_FIX}")


def _load_program(file: Path) -> CifarResNet:
    """A `CifarResNet` holding the weights of an encoder.pt2, built as its record names: trainable, unlike
    the program's own module, whose graph is fixed in eval mode."""
    extra = {PT2_RECORD: ""}
    try:
        with open(file, "rb") as f:  # a file object: torch.export.load wants a .pt2 name, and renamed files load
            program = torch.export.load(f, extra_files=extra)
    except Exception as e:  # noqa: BLE001  (a damaged archive raises RuntimeError, KeyError, ...)
        raise CheckpointError(
            f"{file} is not a readable ExportedProgram (.pt2) file ({type(e).__name__}: {first_line(e)}); {_FIX}"
        ) from e
    if not extra[PT2_RECORD]:
        raise CheckpointError(
            f"{file} is an ExportedProgram (.pt2) of another program (no {PT2_RECORD} in it), not an encoder export "
            f"of this project; {_FIX}"
        )
    return _encoder_from_record(json.loads(extra[PT2_RECORD]), dict(program.state_dict), file, f"its {PT2_RECORD}")


def _load_safetensors(file: Path) -> CifarResNet:
    from safetensors import safe_open

    try:
        with safe_open(str(file), "pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open is no dict)
    except Exception as e:  # noqa: BLE001  (SafetensorError and others, on damaged headers or data)
        raise CheckpointError(
            f"{file} is not a readable safetensors file ({type(e).__name__}: {first_line(e)}); {_FIX}"
        ) from e
    if EXPORT_FORMAT not in metadata:
        raise CheckpointError(
            f"{file} is a safetensors file of another program (no '{EXPORT_FORMAT}' in its metadata), not an "
            f"encoder export of this project; {_FIX}"
        )
    record = {"format": EXPORT_FORMAT, "arch": metadata.get("arch"), "width": metadata.get("width")}
    return _encoder_from_record(record, state, file, "its metadata")


def _load_torchvision_form(state: dict[str, torch.Tensor], file: Path) -> CifarResNet:
    """The torchvision form holds tensors alone: the export.json beside it names the architecture."""
    record_file = file.with_name(JSON_FILE)
    if not record_file.is_file():
        raise CheckpointError(
            f"{file} holds tensors but no {JSON_FILE} is beside it to name their architecture (an export's files "
            f"load together); {_FIX}"
        )
    try:
        record = json.loads(record_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{record_file} is not readable JSON ({type(e).__name__}: {first_line(e)}); export again with "
            f"`python -m simclr.jobs.export ckpt=<run dir> force=true`"
        ) from e
    return _encoder_from_record(record, state, file, f"the {JSON_FILE} beside it")


def _encoder_from_record(
    record: dict[str, Any], state: dict[str, torch.Tensor], file: Path, named_by: str
) -> CifarResNet:
    """A `CifarResNet` of the arch and width an export's record names, holding `state` (torchvision's keys)."""
    if (
        not isinstance(record, dict)
        or record.get("format") != EXPORT_FORMAT
        or not (record.get("arch") and record.get("width"))
    ):
        raise CheckpointError(f"{file}: {named_by} is not the record of an encoder export of this project; {_FIX}")
    return load_weights(CifarResNet(record["arch"], int(record["width"])), state, file, named_by)
