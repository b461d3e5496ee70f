"""The Lightning Trainer both entry points build: its precision, progress bar, checkpoint I/O and logger,
the warnings this project's choices make Lightning print (silenced by name), and the `simclr` logger.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import hydra
import pytorch_lightning as pl
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from simclr.config.logger_schema import typed_logger
from simclr.errors import ConfigError, first_line
from simclr.training.precision import choose_precision
from simclr.training.progress import HostMetricsProgressBar
from simclr.training.resilience import AtomicCheckpointIO
from simclr.training.sync_batchnorm import batchnorm_sync

log = logging.getLogger("simclr")


# Lightning advice that does not apply to either job: evaluation batches are slices of in-memory
# tensors (no workers needed), and augmentation lives in the modules' on_after_batch_transfer and
# training_step on purpose. Advice that applies to one job only is silenced around that job's fit
# (`probe_fit_warnings`), so that, say, a pretraining module left in eval mode still warns.
_EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*overridden `on_after_batch_transfer` in `LightningModule`.*",
    # Under bf16-mixed the parameters stay float32, so the summary's 32-bit size estimate is the true one.
    r".*Precision bf16-mixed is not supported by the model summary.*",
    # pytorch-lightning 2.6's utilities/_pytree.py calls isinstance(spec, LeafSpec), which torch 2.14
    # deprecates (a FutureWarning at the end of every probe fit): Lightning's code, not ours.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated.*",
)
# The probe's frozen encoder is in eval mode on purpose, and the probe validates in its test step.
_PROBE_WARNINGS = (
    r".*module\(s\) in eval mode at the start of training.*",
    r".*`val_dataloader` but have no `validation_step`.*",
)


def silence_expected_warnings() -> None:
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def probe_fit_warnings() -> Iterator[None]:
    """Silences, for the probe's fit only, the advice its frozen, eval-mode encoder draws."""
    with warnings.catch_warnings():
        for pattern in _PROBE_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """The Trainer from `cfg.trainer` (Trainer kwargs), with the logger of `cfg.logger`; its precision is
    `choose_precision`'s and its BatchNorm synchronisation `batchnorm_sync`'s (trainer.precision=auto and
    trainer.sync_batchnorm on a CPU resolved here, in this one place, and logged)."""
    silence_expected_warnings()
    # Each value converted to the type its argument declares (simclr/config/logger_schema.py).
    logger = hydra.utils.instantiate(typed_logger(cfg.logger)) if cfg.get("logger") else False
    # Entries with a _target_ (plugins, extra callbacks) are instantiated; the rest are plain kwargs.
    kwargs = hydra.utils.instantiate(cfg.trainer, _convert_="all")
    callbacks = [*(kwargs.pop("callbacks", None) or []), *callbacks]
    if kwargs.get("enable_progress_bar", True):
        callbacks.append(HostMetricsProgressBar())  # Lightning's own bar reads the loss on every step
    precision, sync = choose_precision(cfg.trainer), batchnorm_sync(cfg.trainer)
    log.info("precision %s (%s); BatchNorm synchronisation: %s", precision.value, precision.why, sync.why)
    kwargs["precision"], kwargs["sync_batchnorm"] = precision.value, sync.sync_batchnorm
    plugins = [*(kwargs.pop("plugins", None) or []), *([sync.plugin] if sync.plugin else []), AtomicCheckpointIO()]
    try:
        return pl.Trainer(
            **kwargs, logger=logger, callbacks=callbacks, plugins=plugins, default_root_dir=cfg.paths.output_dir
        )
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as e:
        raise ConfigError(
            f"the trainer settings are invalid: {first_line(e)}; see conf/trainer/*.yaml for valid values "
            f"(e.g. trainer=cpu, trainer=gpu, trainer.precision=bf16-mixed)"
        ) from e


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run config as plain containers, for checkpoints and loggers."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)
