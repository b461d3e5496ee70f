"""What a checkpoint of this project carries, finding and loading one with errors that name the fix.

Every checkpoint written by `train_ssl.py` or `train_linear.py` holds, besides Lightning's own keys,
`simclr_kind` ("pretrain" or "probe") and `simclr_config` (the resolved run config, plain containers),
so an encoder can be rebuilt without the user repeating any model option.

Every entry point that takes a checkpoint (`train_linear.py ckpt=`, `python -m simclr.export ckpt=`,
`train_ssl.py ckpt_path=`, `simclr.load_encoder`) finds it with `find_checkpoint` (a file, or a run
directory) and reads it with `read_checkpoint`.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from simclr.errors import CheckpointError, first_line
from simclr.nets import CifarResNet, build_encoder
from simclr.precision import choose_precision

KIND_KEY = "simclr_kind"
CONFIG_KEY = "simclr_config"
PRECISION_KEY = "simclr_precision"  # {"precision": "bf16-mixed", "precision_reason": "..."} (simclr/precision.py)
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


def resolve_ckpt_path(value: str | None, output_dir: Path) -> Path | None:
    """The checkpoint `train_ssl.py ckpt_path=` resumes from; None for a fresh start.

    `last`: this run directory's checkpoints/last.ckpt (rerun with the same hydra.run.dir);
    `auto`: the same if it exists, else None: what a requeued cluster job needs;
    anything else: `find_checkpoint` (a file, or a run directory's newest checkpoint).
    """
    if not value:
        return None
    if value in ("auto", "last"):
        candidate = output_dir / "checkpoints" / "last.ckpt"
        if candidate.is_file():
            return candidate
        if value == "auto":
            return None  # nothing to resume: a fresh start
        raise CheckpointError(
            f"ckpt_path=last: no {candidate}; rerun with the interrupted run's directory "
            f"(hydra.run.dir=runs/ssl/<date>/<time>) or pass ckpt_path=<run dir or .ckpt file>"
        )
    return find_checkpoint(value, arg="ckpt_path")


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


def read_checkpoint(path: str | Path, expect: str = "pretrain") -> dict[str, Any]:
    """Loads a checkpoint file on the CPU and checks it is this project's checkpoint of kind `expect`."""
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
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways on foreign bytes (EOFError, KeyError, ...)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {first_line(e)}); "
            f"pass a .ckpt file written by train_ssl.py"
        ) from e
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


# Values of model keys that checkpoints written before the key existed were trained with.
LEGACY_MODEL_DEFAULTS = {"head.output_norm": "none"}
MODEL_SHAPE_KEYS = ("arch", "width", "head.hidden_dim", "head.out_dim", "head.num_layers", "head.batch_norm")


def check_resumable(path: str | Path, ckpt: dict[str, Any], model: dict[str, Any]) -> None:
    """Refuses to resume a pretraining checkpoint into a network the config builds differently.

    `model` is this run's resolved `model` section. A key the checkpoint's config lacks was written
    before the key existed and takes its value from LEGACY_MODEL_DEFAULTS (e.g. a head without an
    output BatchNorm); the error names the override that resumes the checkpoint as it was trained.
    """
    saved = ckpt[CONFIG_KEY].get("model", {})
    for key in (*MODEL_SHAPE_KEYS, *LEGACY_MODEL_DEFAULTS):
        was, now = _lookup(saved, key, LEGACY_MODEL_DEFAULTS.get(key)), _lookup(model, key, None)
        if was != now:
            legacy = key in LEGACY_MODEL_DEFAULTS and _lookup(saved, key, None) is None
            when = " (it was written before that option existed)" if legacy else ""
            raise CheckpointError(
                f"{path} holds a network with model.{key}={was}{when}, but this run builds model.{key}={now}; "
                f"resume it with model.{key}={was}"
            )


def _lookup(section: dict[str, Any], dotted: str, default: Any) -> Any:
    node: Any = section
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
