"""What a checkpoint of this project carries, and loading one with errors that name the fix.

Every checkpoint written by `train_ssl.py` or `train_linear.py` holds, besides Lightning's own keys,
`simclr_kind` ("pretrain" or "probe") and `simclr_config` (the resolved run config, plain containers),
so an encoder can be rebuilt without the user repeating any model option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from simclr.errors import CheckpointError, first_line
from simclr.nets import CifarResNet, build_encoder

KIND_KEY = "simclr_kind"
CONFIG_KEY = "simclr_config"


class ConfigInCheckpoint(pl.Callback):
    """Adds the run's resolved config and kind to every checkpoint Lightning writes."""

    def __init__(self, config: dict[str, Any], kind: str) -> None:
        self.config, self.kind = config, kind

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[KIND_KEY] = self.kind


def read_checkpoint(path: str | Path, expect: str = "pretrain") -> dict[str, Any]:
    """Loads a checkpoint on the CPU and checks it is this project's checkpoint of kind `expect`."""
    path = Path(path)
    if not path.is_file():
        hint = "" if path.suffix == ".ckpt" else " (checkpoints end in .ckpt)"
        raise CheckpointError(
            f"checkpoint {path} does not exist{hint}; pretraining writes them to <run dir>/checkpoints/, "
            f"e.g. ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt"
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
    """Rebuilds the encoder of a pretraining checkpoint from the config stored in it.

    Returns (encoder with the checkpoint's weights, the checkpoint's resolved run config).
    """
    ckpt = read_checkpoint(path, expect="pretrain")
    return encoder_from_checkpoint(ckpt, path), ckpt[CONFIG_KEY]


def encoder_from_checkpoint(ckpt: dict[str, Any], path: str | Path) -> CifarResNet:
    """The encoder of a pretraining checkpoint already read with `read_checkpoint` (`path` names it in errors)."""
    config = ckpt[CONFIG_KEY]
    encoder = build_encoder(**config["model"])
    prefix = "encoder."
    weights = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshapen = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or misshapen:
        first = (missing or unexpected or misshapen)[0]
        raise CheckpointError(
            f"the encoder weights in {path} do not match the architecture its config names "
            f"(model.arch={config['model'].get('arch')}, width={config['model'].get('width')}): "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshapen)} of another shape "
            f"(first: {first}); the checkpoint was edited or written by other code: pass an unmodified one"
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
