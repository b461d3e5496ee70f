"""What keeps long runs safe: atomic checkpoint files, RNG state in checkpoints, a divergence guard, a
guard against a new run writing over an earlier run's checkpoints (the checkpoint to resume from is found
by `simclr.training.resume.resume_checkpoint`), and the one-line report of a full disk (`disk_full_error`)."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from omegaconf import DictConfig

from simclr.errors import CheckpointError, DiskFullError, SimCLRError
from simclr.storage import NO_SPACE, atomic_write, chain, file_being_written, free_bytes, human, no_space
from simclr.training.checkpoints import KIND_KEY, newest_intact
from simclr.training.lost_process import lost_process_error

RNG_KEY = "simclr_rng"


class DivergenceError(SimCLRError):
    """Training produced a non-finite loss or non-finite weights."""


class RunInterrupted(SimCLRError):
    """The run was stopped by a signal; its last checkpoint is intact."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint with `simclr.storage.atomic_write`: a temporary file in the same folder, fsynced,
    renamed over the target, then the folder fsynced (so that a power loss cannot undo the rename).

    A process killed during the write leaves the previous file intact (os.replace is atomic on POSIX). A
    write that fails for lack of space removes its temporary file and ends the run with DiskFullError.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        try:
            atomic_write(path, lambda f: torch.save(checkpoint, f))
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            kind = checkpoint.get(KIND_KEY, "pretrain")
            raise disk_full_error(path, e, checkpoints=path.parent, kind=kind) from e


# What frees the space, by what was being written: a pretraining run's checkpoints, a probe's, an export
# (any other kind: "free space there").
DISK_FULL_FIXES = {
    "pretrain": "free space there, or keep fewer checkpoints (checkpoint.keep=N, a larger checkpoint.every_n_epochs)",
    "probe": "free space there",
    "export": "free space there and export again with force=true, or pass out=DIR on a disk with room",
}


def disk_full_error(path: Path, error: OSError, checkpoints: Path | None, kind: str = "pretrain") -> DiskFullError:
    """The line a job ends with when `path` could not be written for lack of space (`error`: the ENOSPC or
    EDQUOT): the file, the free space left in its directory, the newest intact checkpoint of kind `kind` in
    `checkpoints` (None: not a run's file, no checkpoint to name) and the fix, with the resume command."""
    free = free_bytes(path.parent)
    cause = "the disk quota is used up" if error.errno == errno.EDQUOT else "no space left on the device"
    fix = DISK_FULL_FIXES.get(kind, "free space there")
    kept = ""
    if checkpoints is not None:
        _, newest, epoch = newest_intact(checkpoints, kind)
        if newest is None:
            kept = "; no checkpoint of this run was written yet"
        else:
            size = human(newest.stat().st_size)
            kept = f"; the newest intact checkpoint is {newest} (end of epoch {epoch}, {size})"
            if kind == "pretrain":
                fix += f", then resume with {_resume_args(newest)}"
    return DiskFullError(f"cannot write {path}: {cause} ({human(free)} free in {path.parent}){kept}: {fix}", path, free)


def user_error(e: Exception, cfg: DictConfig) -> SimCLRError | None:
    """The error to report in one line for `e`, or None for a bug (a traceback).

    A SimCLRError is its own report; so is a collective that failed in a multi-process run (`lost_process_error`).
    A full disk is one too, however it surfaced: the DiskFullError of the
    checkpoint writer, possibly under an error Lightning raised while shutting down on the same full disk, or
    any OSError with errno ENOSPC/EDQUOT (metrics, figures, results), reported with `disk_full_error` for the
    file that was being written and the run's checkpoints.
    """
    if isinstance(e, SimCLRError):
        return e
    lost = lost_process_error(e, cfg)
    if lost is not None:
        return lost
    full = next((link for link in chain(e) if isinstance(link, DiskFullError)), None)
    if full is not None:
        return full
    cause = no_space(e)
    if cause is None:
        return None
    out = Path(cfg.paths.output_dir)
    path = file_being_written(e) or out
    kind = "pretrain" if "checkpoint" in cfg else "probe"  # train_linear's config has no checkpoint section
    return disk_full_error(path, cause, checkpoints=out / "checkpoints", kind=kind)


def _resume_args(ckpt: Path) -> str:
    """The overrides that continue a pretraining run in its own directory from `ckpt`."""
    if ckpt.parent.name != "checkpoints":
        return f"ckpt_path={ckpt}"
    run = ckpt.parent.parent
    return (
        f"ckpt_path=last hydra.run.dir={run}" if ckpt.name == "last.ckpt" else f"ckpt_path={ckpt} hydra.run.dir={run}"
    )


class RNGStateInCheckpoint(pl.Callback):
    """Saves the torch (CPU and CUDA) and Python RNG states and restores them on resume.

    Augmentation and shuffling draw from these generators, so a run resumed from an epoch-end
    checkpoint sees the same crops and batches as one that was never interrupted.
    """

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[RNG_KEY] = state

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        state = checkpoint.get(RNG_KEY)
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        random.setstate(_as_tuples(state["python"]))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class DivergenceGuard(pl.Callback):
    """Stops training at the first non-finite loss, and never lets non-finite weights be checkpointed.

    Every step folds "the loss is not finite" into a flag kept on the device (no wait for the GPU);
    the host reads the flag every `every_n_steps` optimizer steps (by default on the log steps, when
    the loggers read the loss anyway) and before every checkpoint, when the weights are checked too,
    so the last good checkpoint is never overwritten by a diverged state.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if every_n_steps < 1:
            raise ValueError(f"divergence.check_every_n_steps={every_n_steps} must be >= 1")
        self.every_n_steps = every_n_steps
        self._diverged: torch.Tensor | None = None  # bool scalar on the training device

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"].detach()
        if self._diverged is None or self._diverged.device != loss.device:
            self._diverged = torch.zeros((), dtype=torch.bool, device=loss.device)
        self._diverged.logical_or_(~torch.isfinite(loss))
        if trainer.global_step % self.every_n_steps == 0:
            self._raise_if_diverged(trainer, pl_module)

    def _raise_if_diverged(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._diverged is not None and bool(self._diverged):  # the one host read
            since = trainer.global_step - trainer.global_step % self.every_n_steps
            what = f"the loss became non-finite after step {max(0, since - self.every_n_steps)}"
            raise DivergenceError(self._message(trainer, pl_module, what))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self._raise_if_diverged(trainer, pl_module)
        finite = torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()])
        if not bool(finite.all()):
            bad = [name for (name, _), ok in zip(pl_module.named_parameters(), finite.tolist(), strict=True) if not ok]
            raise DivergenceError(self._message(trainer, pl_module, f"parameter {bad[0]} is not finite"))

    @staticmethod
    def _message(trainer: pl.Trainer, pl_module: pl.LightningModule, what: str) -> str:
        hp = pl_module.hparams
        temperature = hp.get("loss", {}).get("temperature")
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt" if trainer.checkpoint_callback else None
        kept = f"the last good checkpoint, {last}, is kept" if last and last.exists() else "no checkpoint was written"
        return (
            f"training diverged at step {trainer.global_step} (epoch {trainer.current_epoch}): {what}; {kept}. "
            f"Likely causes: a learning rate too high (lr used {hp.get('lr')}: lower optimizer.lr or raise "
            f"scheduler.warmup_epochs), a temperature too low (loss.temperature={temperature}),"
            f" or fp16 overflow (trainer.precision={trainer.precision}: try bf16-mixed or 32-true)"
        )


def refuse_foreign_run_dir(output_dir: Path, resume: Path | None) -> None:
    """Stops a new run from writing over the checkpoints of an earlier run in the same directory.

    Continuing in place is allowed: `ckpt_path=last` (or any checkpoint), and the SLURM requeue,
    which Lightning resumes from the hpc_ckpt_*.ckpt it wrote in the run directory.
    """
    existing = sorted((output_dir / "checkpoints").glob("*.ckpt"))
    if existing and resume is None and not list(output_dir.glob("hpc_ckpt_*.ckpt")):
        raise CheckpointError(
            f"{output_dir} already holds checkpoints of another run ({existing[-1].name}); pass ckpt_path=last "
            f"to continue that run, or choose a new hydra.run.dir (the default is a fresh timestamped one)"
        )
