"""The pretrained encoder in forms that load without this package, and `load_encoder` for every form.

    python -m simclr.jobs.export ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt   # -> runs/ssl/<date>/<time>/export/
    python -m simclr.jobs.export ckpt=runs/ssl/<date>/<time> out=encoders/run7 force=true

writes into the export directory (by default <run dir>/export/, beside checkpoints/):

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
  to load each form). The .pt2 archive carries the record too, and the safetensors metadata its facts.

The architecture and width are the checkpoint's own (its stored config, `simclr_config`), and `load_encoder`
reads them back from the export's record, never from the shapes of the tensors.

Every form maps images (B, 3, 32, 32) float32, each channel normalised as (x / 255 - mean) / std with the
CIFAR-10 mean and std (`simclr.data.cifar.CIFAR10_MEAN`, `CIFAR10_STD`), to features (B, feature_dim) taken
after global average pooling (512 for ResNet-18/34 at width 64, 2048 for ResNet-50; 8 x width x expansion).

An existing file is never overwritten unless asked (`force=true`). `train_ssl` writes the export of its final
encoder only when it logs to W&B (`log_encoder_artifact`), where the export becomes a model artifact of the
run; other runs export on demand with the command above (a ResNet-18 export is ~135 MB, three copies of the
weights, which most runs never need).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from simclr.errors import CheckpointError, ExportError, SimCLRError, first_line
from simclr.models.nets import CifarResNet
from simclr.storage import NO_SPACE, atomic_write
from simclr.training.checkpoints import (
    KIND_KEY,
    checkpoint_in,
    encoder_from_checkpoint,
    export_form,
    find_checkpoint,
    load_pretrained_encoder,
    load_weights,
    read_checkpoint,
)
from simclr.training.resilience import disk_full_error

log = logging.getLogger("simclr")

PT2_FILE = "encoder.pt2"
TORCHVISION_FILE = "encoder_torchvision.pt"
SAFETENSORS_FILE = "encoder.safetensors"
JSON_FILE = "export.json"
README_FILE = "README.txt"
# Inside the .pt2 archive: the export's record (export.json); a .pt2 of another program lacks it.
PT2_RECORD = "simclr_export.json"
EXPORT_FORMAT = "simclr-encoder-export"
EXPORT_VERSION = 2  # 2: the ExportedProgram (encoder.pt2) replaced TorchScript
# The batch of the example input torch.export traces with: >= 2, since sizes 0 and 1 would be specialised.
EXAMPLE_BATCH = 2
# The architectures torchvision builds with the same blocks; only at width 64, torchvision's fixed width.
TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
USAGE = "usage: python -m simclr.jobs.export ckpt=PATH [out=DIR] [force=true]"
_FIX = (
    "pass a pretraining checkpoint of this project (<run dir>/checkpoints/last.ckpt), its run directory, "
    "or a file written by `python -m simclr.jobs.export`"
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


def export_encoder(ckpt_path: str | Path, out_dir: str | Path | None = None, force: bool = False) -> dict[str, Path]:
    """Writes the encoder of a pretraining checkpoint in the three forms of this module, with export.json and README.

    Args:
        ckpt_path: a pretraining .ckpt of this project, or its run directory (`find_checkpoint`).
        out_dir: where to write; default `default_export_dir` (<run dir>/export/).
        force: overwrite files of an earlier export; without it an existing file stops the export
            before anything is written (ExportError).

    Returns {"torchvision", "pt2", "safetensors", "json", "readme"} -> the file written; no
    "torchvision" when the encoder has no torchvision equivalent (the reason is logged and in export.json).
    """
    ckpt_path = find_checkpoint(ckpt_path)
    ckpt = read_checkpoint(ckpt_path, expect="pretrain")
    encoder = encoder_from_checkpoint(ckpt, ckpt_path).eval()
    out = Path(out_dir) if out_dir is not None else default_export_dir(ckpt_path)
    if out.exists() and not out.is_dir():
        raise ExportError(f"out={out} is a file, not a directory; pass out=DIR for the export files")
    tv_name, tv_reason = torchvision_equivalent(encoder.arch, encoder.width)
    names = {"pt2": PT2_FILE, "safetensors": SAFETENSORS_FILE, "json": JSON_FILE, "readme": README_FILE}
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
        atomic_write(paths["torchvision"], lambda f: torch.save(state, f))
    else:
        log.warning(
            "export: no %s: %s; the ExportedProgram and safetensors forms are written", TORCHVISION_FILE, tv_reason
        )
    atomic_write(paths["pt2"], lambda f: _save_program(encoder, f, info))
    atomic_write(paths["safetensors"], lambda f: f.write(_safetensors_bytes(state, info)))
    atomic_write(paths["json"], lambda f: f.write((json.dumps(info, indent=2) + "\n").encode()))
    atomic_write(paths["readme"], lambda f: f.write(readme(info).encode()))
    for path in paths.values():
        log.info("export: wrote %s", path)
    return paths


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


def _save_program(encoder: CifarResNet, f: Any, info: dict[str, Any]) -> None:
    """torch.export of the eval-mode encoder, batch dimension dynamic, with the export's record inside."""
    example = torch.zeros(EXAMPLE_BATCH, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(encoder.eval(), (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, f, extra_files={PT2_RECORD: json.dumps(info)})


def _safetensors_bytes(state: dict[str, torch.Tensor], info: dict[str, Any]) -> bytes:
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
    return save(state, metadata=metadata)  # bytes, written by _atomic: save_file makes the file private (0600)


# ---- loading -----------------------------------------------------------------------------------------


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
            "`python -m simclr.jobs.export ckpt=%s force=true`",
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
    """`python -m simclr.jobs.export`: 0 after writing the export; 2 and one line `error: ...` on a user error."""
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
        if e.errno in NO_SPACE and e.filename:
            print(f"error: {disk_full_error(Path(e.filename), e, checkpoints=None, kind='export')}", file=sys.stderr)
            return 2
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
