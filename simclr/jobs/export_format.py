"""The format of an encoder export: its file names, its record (export.json) and the README made from it.

An export directory (written by simclr/jobs/export.py, read back by simclr/jobs/load.py) holds:

- `encoder.pt2`: the encoder in eval mode as a `torch.export` ExportedProgram (the graph and its weights,
  any batch size), for torch alone:

      m = torch.export.load("encoder.pt2").module()   # call it directly: .eval() and .train() are not supported
      features = m(images)

- `encoder_torchvision.pt`: a state dict for `torchvision.models.resnet18/34/50` with the CIFAR stem
  (width 64 only; other widths and resnet_tiny have no torchvision model, and this form is skipped):

      m = torchvision.models.resnet18()
      m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity(); m.fc = nn.Identity()
      m.load_state_dict(torch.load("encoder_torchvision.pt", weights_only=True)); m.eval()

- `encoder.safetensors`: the weights (keys as the torchvision form), metadata: arch, width, feature_dim,
  the normalisation, the source checkpoint, its epoch and step;
- `export.json`: the record of all this (`export_info`), and `README.txt`, generated from that record (how
  to load each form). The .pt2 archive carries the record too (as PT2_RECORD), and the safetensors
  metadata its facts.

The architecture and width are the checkpoint's own (its stored config, `simclr_config`); the record names
them so that a reader rebuilds the network from them, never from the shapes of the tensors.

Every form maps images (B, 3, 32, 32) float32, each channel normalised as (x / 255 - mean) / std with the
CIFAR-10 mean and std (`simclr.data.cifar.CIFAR10_MEAN`, `CIFAR10_STD`), to features (B, feature_dim) taken
after global average pooling (512 for ResNet-18/34 at width 64, 2048 for ResNet-50; 8 x width x expansion).

The writer and the reader both import this module, so neither depends on the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from simclr.models.nets import CifarResNet

PT2_FILE = "encoder.pt2"
TORCHVISION_FILE = "encoder_torchvision.pt"
SAFETENSORS_FILE = "encoder.safetensors"
JSON_FILE = "export.json"
README_FILE = "README.txt"
# Inside the .pt2 archive: the export's record (export.json); a .pt2 of another program lacks it.
PT2_RECORD = "simclr_export.json"
EXPORT_FORMAT = "simclr-encoder-export"
# Raised when the files of an export change. In version 2 the program form is a torch.export ExportedProgram
# (encoder.pt2); version 1 held TorchScript (encoder.torchscript.pt) in its place.
EXPORT_VERSION = 2
# The architectures torchvision builds with the same blocks; only at width 64, torchvision's fixed width.
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")


def torchvision_equivalent(arch: str, width: int) -> tuple[str | None, str]:
    """(`torchvision.models` constructor name, "") when the encoder has one, else (None, why not)."""
    if arch not in TORCHVISION_ARCHS:
        return None, f"model.arch={arch} has no torchvision model (torchvision builds {', '.join(TORCHVISION_ARCHS)})"
    if width != 64:
        return None, f"model.width={width}: torchvision's ResNets have width 64 only"
    return arch, ""


def torchvision_snippet(arch: str, path: str = TORCHVISION_FILE) -> str:
    """Python that builds torchvision's `arch` with the CIFAR stem and loads the exported state dict into it.

    The stem conv (3x3, stride 1) and the removed max-pool are the CIFAR stem; `fc = Identity` returns the
    pooled features (B, feature_dim) instead of class logits.
    """
    return (
        "import torch, torchvision\n"
        "from torch import nn\n"
        f"m = torchvision.models.{arch}()\n"
        "m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity(); m.fc = nn.Identity()\n"
        f"m.load_state_dict(torch.load({path!r}, weights_only=True))\n"
        "m.eval()\n"
    )


def export_info(
    encoder: CifarResNet, ckpt_path: Path, ckpt: dict[str, Any], tv_name: str | None, tv_reason: str
) -> dict[str, Any]:
    """What export.json records: the encoder, its input and output, its source, and how to load each form."""
    load = {
        "pt2": f"import torch\nm = torch.export.load({PT2_FILE!r}).module()\n",
        "safetensors": "weights = safetensors.torch.load_file('encoder.safetensors')  # keys as the torchvision form",
        "simclr": "m = simclr.load_encoder('<this directory or a file in it>')  # frozen; trainable=True to fine-tune",
    }
    if tv_name is not None:
        load = {"torchvision": torchvision_snippet(tv_name), **load}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "arch": encoder.arch,
        "width": encoder.width,
        "feature_dim": encoder.feature_dim,
        "torchvision": tv_name,
        "torchvision_skipped": tv_reason or None,
        "input": {
            "shape": ["B", 3, 32, 32],
            "dtype": "float32",
            "normalization": "per channel (x / 255 - mean) / std, x the uint8 RGB image",
            "mean": list(CIFAR10_MEAN),
            "std": list(CIFAR10_STD),
        },
        "output": {"shape": ["B", encoder.feature_dim], "what": "features after global average pooling"},
        "source": {
            "checkpoint": str(ckpt_path.resolve()),
            "epoch": ckpt.get("epoch"),  # Lightning's 0-based index of the last epoch the checkpoint saw
            "global_step": ckpt.get("global_step"),
        },
        "load": load,
    }


def readme(info: dict[str, Any]) -> str:
    """README.txt of an export directory, from its record (export.json): what goes in, what comes out, and the
    lines that load each form."""
    mean, std = info["input"]["mean"], info["input"]["std"]
    load = info["load"]
    forms = [
        f"ExportedProgram ({PT2_FILE}), torch.export's format: the network in eval mode, any batch size.\n"
        f"Call it directly (its .eval() and .train() raise: the eval-mode graph is fixed):\n"
        f"{_indented(load['pt2'])}    features = m(images)\n",
        f"torchvision ({TORCHVISION_FILE}):\n{_indented(load['torchvision'])}"
        if info["torchvision"]
        else f"No torchvision form: {info['torchvision_skipped']}.\n",
        f"safetensors ({SAFETENSORS_FILE}): the weights, keys as the torchvision form; metadata = export.json's facts\n"
        f"{_indented('import safetensors.torch')}{_indented(load['safetensors'])}",
        f"With the simclr package (any form, or this directory):\n"
        f"{_indented('import simclr')}{_indented(load['simclr'])}",
    ]
    return (
        f"SimCLR CIFAR-10 encoder: {info['arch']}, width {info['width']}, from {info['source']['checkpoint']}\n"
        f"(epoch index {info['source']['epoch']}, counted from 0; global step {info['source']['global_step']}).\n\n"
        f"Input: float32 (B, 3, 32, 32) RGB, each channel normalised as (x / 255 - mean) / std with\n"
        f"    mean = {tuple(mean)}, std = {tuple(std)}  (the CIFAR-10 statistics).\n"
        f"Output: float32 (B, {info['feature_dim']}), the features after global average pooling.\n\n" + "\n".join(forms)
    )


def _indented(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.splitlines())
