"""Errors that are the user's to fix: the scripts print their message alone, without a traceback."""


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
