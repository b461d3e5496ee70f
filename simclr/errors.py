"""Errors that are the user's to fix: the scripts print their message alone, without a traceback."""

from __future__ import annotations

from pathlib import Path


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (library messages can run to pages), or its type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class SimCLRError(Exception):
    """A problem with the user's input (data, checkpoint, config value); the message names the fix."""


class DataError(SimCLRError):
    """The CIFAR-10 files are missing, truncated or malformed."""


class CheckpointError(SimCLRError):
    """A checkpoint path is missing, not a checkpoint, or a checkpoint of something else."""


class ConfigError(SimCLRError, ValueError):
    """A config value is invalid."""


class ExportError(SimCLRError):
    """An encoder export would overwrite files, or cannot be written where asked."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file cannot be read (truncated, zeroed, not a checkpoint).

    `path`: the file; `damage`: what is wrong with it, in words; `intact`: the newest checkpoint beside it
    that reads (None if there is none), and `intact_epoch`, the epoch index it ends; `damaged`: `path` and
    the newer files beside it that do not read either (what `ckpt_path=auto` sets aside before it resumes).
    """

    def __init__(
        self,
        message: str,
        path: Path | None = None,  # defaults: an exception is rebuilt from its message alone when unpickled
        damage: str = "",
        damaged: list[Path] | None = None,
        intact: Path | None = None,
        intact_epoch: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path, self.damage, self.damaged = path, damage, damaged or []
        self.intact, self.intact_epoch = intact, intact_epoch


class DiskFullError(SimCLRError):
    """A file the job writes could not be written for lack of space; nothing partial was left behind.

    `path`: the file; `free`: the bytes left in its directory after the failed write was cleaned up.
    """

    def __init__(self, message: str, path: Path | None = None, free: int | None = None) -> None:
        super().__init__(message)
        self.path, self.free = path, free
