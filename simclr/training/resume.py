"""Which checkpoint a pretraining run continues from (`train_ssl.py ckpt_path=`), and what resuming does with a
damaged one.

`ckpt_path=` takes `last` (this run directory's checkpoints/last.ckpt), `auto` (the same when it exists, else a
fresh start: what a requeued cluster job passes), or a .ckpt file or run directory (`find_checkpoint`). The
checkpoint is read with `read_checkpoint`, whose DamagedCheckpointError names the newest intact checkpoint
beside a damaged one; under `auto` only, the run continues from that one, keeps the damaged files under new
names (`set_aside`) and logs which epochs (Lightning's 0-based epoch indices) are trained again. Before
anything is renamed, `check_resumable` compares the network the checkpoint holds with the one the config builds.

Resuming concerns train_ssl.py alone; every reader of a checkpoint (train_linear.py, the export,
`simclr.load_encoder`) uses simclr/training/checkpoints.py, which this module builds on.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

from simclr.errors import CheckpointError, DamagedCheckpointError
from simclr.storage import fsync_dir
from simclr.training.checkpoints import CONFIG_KEY, find_checkpoint, read_checkpoint

log = logging.getLogger("simclr")


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


def resume_checkpoint(value: str | None, output_dir: Path, model: dict[str, Any]) -> tuple[Path, dict] | None:
    """The checkpoint `train_ssl.py ckpt_path=value` resumes from, read and checked against this run's `model`
    section (`check_resumable`); None for a fresh start.

    A damaged checkpoint stops the run, naming the newest intact one beside it, except with `ckpt_path=auto`
    (a requeued job, which nobody is watching): it then resumes from that intact checkpoint, says so, and
    keeps the damaged files under new names (`set_aside`). `last` and explicit paths name one file, so they
    refuse.
    """
    path = resolve_ckpt_path(value, output_dir)
    if path is None:
        return None
    try:
        ckpt = read_checkpoint(path, expect="pretrain", arg="ckpt_path")
    except DamagedCheckpointError as e:
        if value not in ("auto", "last"):
            raise
        if e.intact is None:  # nothing to resume from in this run
            more = f"{e}, or rename it and rerun to start this run afresh"
            raise DamagedCheckpointError(more, e.path, e.damage, e.damaged) from e
        if value == "last":
            more = f"{e}, or rerun with ckpt_path=auto, which resumes from it and keeps {path.name} under a new name"
            raise DamagedCheckpointError(more, e.path, e.damage, e.damaged, e.intact, e.intact_epoch) from e
        path, ckpt = e.intact, read_checkpoint(e.intact, expect="pretrain", arg="ckpt_path")
        check_resumable(path, ckpt, model)  # before anything is renamed
        kept = [set_aside(damaged) for damaged in e.damaged]
        log.warning("%s", fallback_note(e, kept, _last_logged_epoch(output_dir)))
        return path, ckpt
    check_resumable(path, ckpt, model)
    return path, ckpt


def set_aside(path: Path) -> Path:
    """Renames a damaged checkpoint to <name>.damaged-<time> (never over another file) and returns the new
    name: kept for inspection, out of the way of the next write and of every *.ckpt search."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    os.rename(path, target)
    fsync_dir(path.parent)
    return target


def fallback_note(error: DamagedCheckpointError, kept: list[Path], last_epoch: int | None) -> str:
    """The line `ckpt_path=auto` logs when it resumes from an intact checkpoint instead of a damaged one.

    `last_epoch`: the highest epoch index the run logged (None if unknown), to say which epochs are repeated.
    """
    names = ", ".join(str(k) for k in kept)
    kept_as = f"the damaged file is kept as {names}" if len(kept) == 1 else f"the damaged files are kept as {names}"
    return (
        f"ckpt_path=auto: {error.path} cannot be read: {error.damage}; resuming from {error.intact} "
        f"(end of epoch {error.intact_epoch}) instead: {_repeated(error.intact_epoch, last_epoch)}; {kept_as}"
    )


def _repeated(intact_epoch: int | None, last_epoch: int | None) -> str:
    if intact_epoch is None:
        return "the epochs after it are trained again"
    first = intact_epoch + 1
    if last_epoch is None:
        return f"the epochs from {first} on that the damaged file held are trained again"
    if last_epoch < first:
        return "no epoch is trained again"
    return (
        f"epoch {first} is trained again" if last_epoch == first else f"epochs {first}-{last_epoch} are trained again"
    )


def _last_logged_epoch(run_dir: Path) -> int | None:
    """The highest epoch index in the run's metrics.csv (the CSV logger's), or None without one."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        epochs = [int(float(row["epoch"])) for row in csv.DictReader(f) if row.get("epoch")]
    return max(epochs, default=None)


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
