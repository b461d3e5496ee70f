"""Writes the pretrained encoder in forms that load without this package (`python -m simclr.jobs.export`).

    python -m simclr.jobs.export ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt   # -> runs/ssl/<date>/<time>/export/
    python -m simclr.jobs.export ckpt=runs/ssl/<date>/<time> out=encoders/run7 force=true

writes into the export directory (by default <run dir>/export/, beside checkpoints/) the files that
simclr/jobs/export_format.py describes: encoder.pt2 (a torch.export ExportedProgram), encoder_torchvision.pt
(a state dict for torchvision's ResNet, width 64 only), encoder.safetensors, export.json and README.txt.
Each maps normalised images (B, 3, 32, 32) float32 to features (B, feature_dim). `simclr.load_encoder`
(simclr/jobs/load.py) reads every one of them back.

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

from simclr.errors import ExportError, SimCLRError, first_line
from simclr.jobs.export_format import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    JSON_FILE,
    PT2_FILE,
    PT2_RECORD,
    README_FILE,
    SAFETENSORS_FILE,
    TORCHVISION_FILE,
    export_info,
    readme,
    torchvision_equivalent,
)
from simclr.models.nets import CifarResNet
from simclr.storage import NO_SPACE, atomic_write
from simclr.training.checkpoints import encoder_from_checkpoint, find_checkpoint, read_checkpoint
from simclr.training.resilience import disk_full_error

log = logging.getLogger("simclr")

# The batch of the example input torch.export traces with: >= 2, since sizes 0 and 1 would be specialised.
EXAMPLE_BATCH = 2
USAGE = "usage: python -m simclr.jobs.export ckpt=PATH [out=DIR] [force=true]"


def default_export_dir(ckpt_path: Path) -> Path:
    """<run dir>/export for a checkpoint in <run dir>/checkpoints/; else export/ beside the checkpoint."""
    folder = ckpt_path.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / "export"


def export_encoder(ckpt_path: str | Path, out_dir: str | Path | None = None, force: bool = False) -> dict[str, Path]:
    """Writes the encoder of a pretraining checkpoint in the three forms of an export, with export.json and README.

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
    return save(state, metadata=metadata)  # bytes, for atomic_write: save_file would make the file private (0600)


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
