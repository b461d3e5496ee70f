"""Errors that are the user's to fix: the scripts print their message alone, without a traceback."""


class SimCLRError(Exception):
    """A problem with the user's input (data, checkpoint, config value); the message names the fix."""


class DataError(SimCLRError):
    """The CIFAR-10 files are missing, truncated or malformed."""


class CheckpointError(SimCLRError):
    """A checkpoint path is missing, not a checkpoint, or a checkpoint of something else."""


class ConfigError(SimCLRError, ValueError):
    """A config value is invalid."""
