"""The pretrained encoder in forms that load without this package, and `load_encoder` for every form.

    python -m simclr.export ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt   # -> runs/ssl/<date>/<time>/export/
    python -m simclr.export ckpt=runs/ssl/<date>/<time> out=encoders/run7 force=true

writes into the export directory (by default <run dir>/export/, beside checkpoints/):

- `encoder_torchvision.pt`: a state dict for `torchvision.models.resnet18/34/50` with the CIFAR stem
  (width 64 only; other widths and resnet_tiny have no torchvision model, and this form is skipped):

      m = torchvision.models.resnet18()
      m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = nn.Identity(); m.fc = nn.Identity()
      m.load_state_dict(torch.load("encoder_torchvision.pt", weights_only=True)); m.eval()

- `encoder.torchscript.pt`: the encoder in eval mode as TorchScript, for `torch.jit.load` (no Python class needed);
- `encoder.safetensors`: the weights (keys as the torchvision form), metadata: arch, width, feature_dim,
  the normalisation, the source checkpoint, its epoch and step;
- `export.json` (the same facts, machine-readable) and `README.txt` (how to load each form).

Every form maps images (B, 3, 32, 32) float32, each channel normalised as (x / 255 - mean) / std with the
CIFAR-10 mean and std (`simclr.augment.CIFAR10_MEAN`, `CIFAR10_STD`), to features (B, feature_dim) taken
after global average pooling (512 for ResNet-18/34 at width 64, 2048 for ResNet-50; 8 x width x expansion).

An existing file is never overwritten unless asked (`force=true`). `train_ssl` writes the export of its final
encoder only when it logs to W&B (`log_encoder_artifact`), where the export becomes a model artifact of the
run; other runs export on demand with the command above (a ResNet-18 export is ~130 MB, three copies of the
weights, which most runs never need).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from simclr.augment import CIFAR10_MEAN, CIFAR10_STD
from simclr.errors import CheckpointError, ExportError, SimCLRError, first_line
from simclr.nets import ARCHITECTURES, CifarResNet

log = logging.getLogger("simclr")

TORCHVISION_FILE = "encoder_torchvision.pt"
TORCHSCRIPT_FILE = "encoder.torchscript.pt"
SAFETENSORS_FILE = "encoder.safetensors"
JSON_FILE = "export.json"
README_FILE = "README.txt"
# Inside the TorchScript archive: marks it as this project's export (a foreign TorchScript file lacks it).
TORCHSCRIPT_EXTRA = "simclr_export.json"
EXPORT_FORMAT = "simclr-encoder-export"
EXPORT_VERSION = 1
# The architectures torchvision builds with the same blocks; only at width 64, torchvision's fixed width.
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
USAGE = "usage: python -m simclr.export ckpt=PATH [out=DIR] [force=true]"
_FIX = (
    "pass a pretraining checkpoint of this project (<run dir>/checkpoints/last.ckpt), its run directory, "
    "or a file written by `python -m simclr.export`"
)


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


def default_export_dir(ckpt_path: Path) -> Path:
    """<run dir>/export for a checkpoint in <run dir>/checkpoints/; else export/ beside the checkpoint."""
    folder = ckpt_path.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / "export"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/last.ckpt (or a folder's last.ckpt)."""
    path = Path(path)
    if not path.is_dir():
        return path  # a missing file is reported by read_checkpoint, with the fix
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{path} is a directory without checkpoints/last.ckpt; pass the checkpoint file itself, "
        f"e.g. ckpt={path}/checkpoints/<name>.ckpt, or the directory of a pretraining run"
    )


def export_encoder(ckpt_path: str | Path, out_dir: str | Path | None = None, force: bool = False) -> dict[str, Path]:
    """Writes the encoder of a pretraining checkpoint in the three forms of this module, with export.json and README.

    Args:
        ckpt_path: a pretraining .ckpt of this project, or its run directory (then checkpoints/last.ckpt).
        out_dir: where to write; default `default_export_dir` (<run dir>/export/).
        force: overwrite files of an earlier export; without it an existing file stops the export
            before anything is written (ExportError).

    Returns {"torchvision", "torchscript", "safetensors", "json", "readme"} -> the file written; no
    "torchvision" when the encoder has no torchvision equivalent (the reason is logged and in export.json).
    """
    from simclr.checkpoints import encoder_from_checkpoint, read_checkpoint  # imports Lightning: only when needed

    ckpt_path = resolve_checkpoint(ckpt_path)
    if ckpt_path.is_file() and (form := _sniff(ckpt_path)) is not None:
        raise CheckpointError(
            f"{ckpt_path} is a {form} file, not a pretraining checkpoint; the export reads the checkpoint: "
            f"pass ckpt=<run dir>/checkpoints/last.ckpt"
        )
    ckpt = read_checkpoint(ckpt_path, expect="pretrain")
    encoder = encoder_from_checkpoint(ckpt, ckpt_path).eval()
    out = Path(out_dir) if out_dir is not None else default_export_dir(ckpt_path)
    if out.exists() and not out.is_dir():
        raise ExportError(f"out={out} is a file, not a directory; pass out=DIR for the export files")
    tv_name, tv_reason = torchvision_equivalent(encoder.arch, encoder.width)
    names = {"torchscript": TORCHSCRIPT_FILE, "safetensors": SAFETENSORS_FILE, "json": JSON_FILE, "readme": README_FILE}
    if tv_name is not None:
        names = {"torchvision": TORCHVISION_FILE, **names}
    # Every file name of an export counts, the torchvision form's included when this encoder has none: left
    # beside the new files, an earlier export's encoder_torchvision.pt would pass for this encoder's.
    existing = [out / n for n in (TORCHVISION_FILE, *names.values()) if (out / n).exists()]
    if existing and not force:
        raise ExportError(
            f"{existing[0]} already exists (an earlier export); pass force=true to overwrite it, "
            f"or out=DIR to export elsewhere"
        )
    out.mkdir(parents=True, exist_ok=True)
    if tv_name is None and (out / TORCHVISION_FILE).exists():
        (out / TORCHVISION_FILE).unlink()
    info = export_info(encoder, ckpt_path, ckpt, tv_name, tv_reason)
    # The state dict of the encoder is torchvision's ResNet's minus `fc`: the same keys, in the same modules.
    # Contiguous copies: pretraining may leave weights channels_last, which safetensors refuses.
    state = {k: v.detach().contiguous().clone() for k, v in encoder.state_dict().items()}
    paths = {form: out / name for form, name in names.items()}
    if tv_name is not None:
        _atomic(paths["torchvision"], lambda tmp: torch.save(state, tmp))
    else:
        log.warning("export: no %s: %s; the TorchScript and safetensors forms are written", TORCHVISION_FILE, tv_reason)
    _atomic(paths["torchscript"], lambda tmp: _save_torchscript(encoder, tmp, info))
    _atomic(paths["safetensors"], lambda tmp: _save_safetensors(state, tmp, info))
    _atomic(paths["json"], lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
    _atomic(paths["readme"], lambda tmp: tmp.write_text(readme(info)))
    for path in paths.values():
        log.info("export: wrote %s", path)
    return paths


def export_info(
    encoder: CifarResNet, ckpt_path: Path, ckpt: dict[str, Any], tv_name: str | None, tv_reason: str
) -> dict[str, Any]:
    """What export.json records: the encoder, its input and output, its source, and how to load each form."""
    load = {
        "torchscript": f"m = torch.jit.load({TORCHSCRIPT_FILE!r}).eval()",
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
    """README.txt of an export directory: what goes in, what comes out, and the lines that load each form."""
    mean, std = info["input"]["mean"], info["input"]["std"]
    forms = [
        f"TorchScript ({TORCHSCRIPT_FILE}):\n    import torch\n    {info['load']['torchscript']}\n",
        f"safetensors ({SAFETENSORS_FILE}): the weights, keys as the torchvision form; metadata = export.json's facts\n"
        f"    import safetensors.torch\n    {info['load']['safetensors']}\n",
        f"With the simclr package (any form, or this directory):\n    import simclr\n    {info['load']['simclr']}\n",
    ]
    if info["torchvision"]:
        snippet = "".join(f"    {line}\n" for line in info["load"]["torchvision"].splitlines())
        forms.insert(0, f"torchvision ({TORCHVISION_FILE}):\n{snippet}")
    else:
        forms.insert(0, f"No torchvision form: {info['torchvision_skipped']}.\n")
    return (
        f"SimCLR CIFAR-10 encoder: {info['arch']}, width {info['width']}, from {info['source']['checkpoint']}\n"
        f"(epoch index {info['source']['epoch']}, counted from 0; global step {info['source']['global_step']}).\n\n"
        f"Input: float32 (B, 3, 32, 32) RGB, each channel normalised as (x / 255 - mean) / std with\n"
        f"    mean = {tuple(mean)}, std = {tuple(std)}  (the CIFAR-10 statistics).\n"
        f"Output: float32 (B, {info['feature_dim']}), the features after global average pooling.\n\n" + "\n".join(forms)
    )


def _atomic(path: Path, write: Any) -> None:
    # A crash mid-write leaves a .tmp file, never a truncated file under the final name.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


@contextmanager
def _torchscript_quietly() -> Iterator[None]:
    # torch >= 2.9 flags torch.jit as deprecated (FutureWarning); TorchScript is still the one format that
    # loads in C++ and in Python without the class, which is why the export writes it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        yield


def _save_torchscript(encoder: CifarResNet, path: Path, info: dict[str, Any]) -> None:
    encoder = encoder.eval()
    with _torchscript_quietly():
        try:
            scripted = torch.jit.script(encoder)
        except Exception:  # noqa: BLE001  (a module TorchScript cannot compile: the trace is exact for this net)
            scripted = torch.jit.trace(encoder, torch.zeros(1, 3, 32, 32))
        torch.jit.save(scripted, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(info)})


def _save_safetensors(state: dict[str, torch.Tensor], path: Path, info: dict[str, Any]) -> None:
    from safetensors.torch import save

    metadata = {
        "format": "pt",  # what Hugging Face's loaders look for
        EXPORT_FORMAT: str(EXPORT_VERSION),
        "arch": info["arch"],
        "width": str(info["width"]),
        "feature_dim": str(info["feature_dim"]),
        "mean": json.dumps(info["input"]["mean"]),
        "std": json.dumps(info["input"]["std"]),
        "input": "float32 (B, 3, 32, 32), per channel (x / 255 - mean) / std",
        "output": f"float32 (B, {info['feature_dim']}) pooled features",
        "torchvision": info["torchvision"] or "",
        "source_checkpoint": info["source"]["checkpoint"],
        "epoch": str(info["source"]["epoch"]),
        "global_step": str(info["source"]["global_step"]),
    }
    path.write_bytes(save(state, metadata=metadata))  # not save_file, which makes the file private (0600)


# ---- loading -----------------------------------------------------------------------------------------


def load_encoder(path: str | Path, trainable: bool = False, device: str | torch.device = "cpu") -> nn.Module:
    """The encoder of a pretraining checkpoint or of an export, ready to use.

    Args:
        path: a pretraining .ckpt of this project, a run directory (its checkpoints/last.ckpt), an export
            directory, or one of its files (encoder.safetensors, encoder_torchvision.pt, encoder.torchscript.pt).
        trainable: False: frozen (eval mode, no parameter requires grad), for features;
            True: train mode with gradients, for fine-tuning.
        device: where the weights go.

    Returns a `CifarResNet` (a TorchScript module for encoder.torchscript.pt) mapping normalised images
    (B, 3, 32, 32) float32 (see this module's docstring) to features (B, feature_dim).
    Raises CheckpointError (one line: the path and the fix) for anything else.
    """
    file = _encoder_file(Path(path))
    encoder = _load_file(file, device)
    encoder.to(device)
    encoder.train(trainable)
    for p in encoder.parameters():  # not requires_grad_(): TorchScript modules lack it
        p.requires_grad_(trainable)
    return encoder


def _encoder_file(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; {_FIX}")
    if path.is_file():
        return path
    candidates = [path / "checkpoints" / "last.ckpt", path / "last.ckpt"]
    for folder in (path, path / "export"):
        candidates += [folder / SAFETENSORS_FILE, folder / TORCHVISION_FILE, folder / TORCHSCRIPT_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{path} is a directory with no encoder in it (no checkpoints/last.ckpt, last.ckpt or {SAFETENSORS_FILE}); "
        f"{_FIX}"
    )


def _load_file(file: Path, device: str | torch.device) -> nn.Module:
    """TorchScript and safetensors are told by their bytes (renamed, they still load); the rest by torch.load."""
    form = _sniff(file)
    if form == "TorchScript":
        return _load_torchscript(file, device)
    if form == "safetensors":
        return _load_safetensors(file)
    from simclr.checkpoints import KIND_KEY, load_pretrained_encoder

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
        return encoder_from_state_dict(obj, file)
    raise CheckpointError(f"{file} is a PyTorch file but holds no encoder of this project; {_FIX}")


def _sniff(file: Path) -> str | None:
    """The form of a file by its bytes: TorchScript, safetensors, or None (a torch.save file or another)."""
    if zipfile.is_zipfile(file) and _is_torchscript(file):
        return "TorchScript"
    return "safetensors" if _is_safetensors(file) else None


def _is_torchscript(file: Path) -> bool:
    # torch.save archives hold <name>/data.pkl; TorchScript archives also hold <name>/constants.pkl and code/.
    with zipfile.ZipFile(file) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _is_safetensors(file: Path) -> bool:
    # The format: an 8-byte little-endian header length, then that many bytes of JSON.
    with open(file, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (size,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and size <= file.stat().st_size - 8


def _load_torchscript(file: Path, device: str | torch.device) -> nn.Module:
    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with _torchscript_quietly():
            module = torch.jit.load(str(file), map_location=device, _extra_files=extra)
    except Exception as e:  # noqa: BLE001  (a damaged archive raises RuntimeError with pages of C++ context)
        raise CheckpointError(
            f"{file} is not a readable TorchScript file ({type(e).__name__}: {first_line(e)}); {_FIX}"
        ) from e
    if not extra[TORCHSCRIPT_EXTRA]:
        raise CheckpointError(
            f"{file} is a TorchScript file of another program (no {TORCHSCRIPT_EXTRA} in it), not an encoder export "
            f"of this project; {_FIX}"
        )
    return module


def _load_safetensors(file: Path) -> nn.Module:
    from safetensors.torch import load_file

    try:
        state = load_file(str(file), device="cpu")
    except Exception as e:  # noqa: BLE001  (SafetensorError and others, on damaged headers or data)
        raise CheckpointError(
            f"{file} is not a readable safetensors file ({type(e).__name__}: {first_line(e)}); {_FIX}"
        ) from e
    return encoder_from_state_dict(state, file)


def encoder_from_state_dict(state: dict[str, torch.Tensor], source: str | Path) -> CifarResNet:
    """A `CifarResNet` holding a state dict of the torchvision form; arch and width are read off the shapes.

    Raises CheckpointError when the tensors are not such an encoder (e.g. torchvision's ImageNet ResNet,
    whose stem is a 7x7 conv and which has an `fc`).
    """
    conv1 = state.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4:
        raise CheckpointError(f"{source} holds tensors but no ResNet encoder (no 4-d 'conv1.weight'); {_FIX}")
    if tuple(conv1.shape[1:]) != (3, 3, 3):
        imagenet = " (a 7x7 stem: torchvision's ImageNet ResNet)" if tuple(conv1.shape[2:]) == (7, 7) else ""
        raise CheckpointError(
            f"{source} holds a ResNet whose stem conv is {tuple(conv1.shape)}{imagenet}, not this project's "
            f"CIFAR stem (3x3, stride 1); {_FIX}"
        )
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5))
    arch = next(
        (a for a, (block, layers) in ARCHITECTURES.items() if (block is Bottleneck) == bottleneck and layers == blocks),
        None,
    )
    if arch is None:
        raise CheckpointError(
            f"{source} holds a ResNet with {list(blocks)} blocks per stage, which no model.arch of this project "
            f"builds; {_FIX}"
        )
    encoder = CifarResNet(arch, width=int(conv1.shape[0]))
    expected = encoder.state_dict()
    wrong = sorted(set(expected) ^ set(state)) or sorted(k for k in expected if expected[k].shape != state[k].shape)
    if wrong:
        raise CheckpointError(
            f"{source} does not hold a {arch} encoder of width {conv1.shape[0]} (first mismatch: {wrong[0]}, e.g. "
            f"an 'fc' layer or another block); {_FIX}"
        )
    encoder.load_state_dict(state)
    return encoder


# ---- W&B ---------------------------------------------------------------------------------------------


def log_encoder_artifact(trainer: Any, ckpt_path: str | Path, metrics: dict[str, Any]) -> Path | None:
    """With a W&B logger: exports the final encoder to <run dir>/export/ and logs it as a model artifact.

    The artifact, `encoder-<W&B run id>` of type "model", holds the export files and, as metadata, the
    architecture and the run's final kNN (and probe) accuracies. Offline (the default, `logger.offline=true`)
    W&B records it in the offline run and keeps a copy of the files in its staging folder
    (WANDB_DATA_DIR, by default ~/.local/share/wandb/artifacts/staging) until `wandb sync` uploads the run;
    then the dashboard lists it under the run's artifacts.

    Runs on global rank zero only; without a W&B logger it does nothing and returns None. The training
    is over and saved when this runs, so a failure here (disk full, a W&B error) is logged with the
    command that exports by hand, and the run still completes. Returns the export directory, or None.
    """
    from pytorch_lightning.loggers import WandbLogger

    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    if not loggers or not trainer.is_global_zero:
        return None
    ckpt_path = Path(ckpt_path)
    try:
        import wandb

        files = export_encoder(ckpt_path, force=True)  # the run's own export: a resumed run replaces it
        info = json.loads(files["json"].read_text())
        keys = ("val/knn_top1", "test/knn_top1", "probe/val_top1", "probe/test_top1")
        metadata = {
            **{k: info[k] for k in ("arch", "width", "feature_dim", "torchvision", "input")},
            **{k: info["source"][k] for k in ("epoch", "global_step")},
            **{k.replace("/", "_"): float(metrics[k]) for k in keys if metrics.get(k) is not None},
        }
        for lg in loggers:
            run = lg.experiment
            artifact = wandb.Artifact(
                f"encoder-{run.id}",
                type="model",
                description=f"SimCLR CIFAR-10 encoder, {info['arch']} width {info['width']}; README.txt: loading it",
                metadata=metadata,
            )
            for path in files.values():
                artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact)
            log.info("W&B: logged the encoder export %s as artifact %s", files["json"].parent, artifact.name)
        return files["json"].parent
    except Exception as e:  # noqa: BLE001  (see the docstring: the finished run must not fail here)
        log.error(
            "could not export or log the encoder to W&B (%s: %s); export it with "
            "`python -m simclr.export ckpt=%s force=true`",
            type(e).__name__,
            first_line(e),
            ckpt_path,
        )
        return None


# ---- command line ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> dict[str, Any]:
    """`ckpt=PATH [out=DIR] [force=true]`, Hydra-style key=value overrides; ExportError names a bad one."""
    args: dict[str, Any] = {"out": None, "force": False}
    for arg in argv:
        key, eq, value = arg.partition("=")
        key = key.lstrip("+")
        if not eq or key not in ("ckpt", "out", "force") or not value:
            raise ExportError(f"{arg!r} is not an argument of the export; {USAGE}")
        if key == "force":
            if value.lower() not in ("true", "false"):
                raise ExportError(f"force={value} must be true or false; {USAGE}")
            args["force"] = value.lower() == "true"
        else:
            args[key] = value
    if "ckpt" not in args:
        raise ExportError(f"no checkpoint given; {USAGE}, e.g. ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt")
    return args


def main(argv: list[str] | None = None) -> int:
    """`python -m simclr.export`: 0 after writing the export; 2 and one line `error: ...` on a user error."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    # The files written and a skipped form are logged by export_encoder; here they go to stdout, message only.
    handler, level = logging.StreamHandler(sys.stdout), log.level
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        args = parse_args(argv)
        export_encoder(args["ckpt"], args["out"], force=args["force"])
    except SimCLRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. out= on a read-only or full disk
        print(
            f"error: cannot write {e.filename or 'the export'}: {e.strerror or e}; pass out=DIR you can write to",
            file=sys.stderr,
        )
        return 2
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
