"""What both entry points share: derived values, the Trainer and its logger, error reporting (status.json,
the job log, W&B runs of failed jobs)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from simclr.errors import ConfigError, first_line
from simclr.optim import scaled_lr
from simclr.precision import choose_precision
from simclr.progress import HostMetricsProgressBar
from simclr.resilience import AtomicCheckpointIO
from simclr.storage import NO_SPACE, atomic_write_text

log = logging.getLogger("simclr")


@dataclass(frozen=True)
class DerivedValues:
    """Values computed from the config, in this one place, and logged with the run.

    `data.batch_size` is the GLOBAL batch: images per optimizer step over all devices and nodes.
    """

    world_size: int
    global_batch: int
    per_device_batch: int
    lr: float

    def as_log_dict(self) -> dict[str, float | int]:
        return {f"derived/{k}": v for k, v in asdict(self).items()}


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes taking part in training: trainer.devices x trainer.num_nodes (integers required)."""
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    if not isinstance(devices, int) or devices < 1 or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(
            f"trainer.devices={devices!r} and trainer.num_nodes={nodes!r} must be positive integers "
            f"(the global batch is split over devices x nodes), e.g. trainer.devices=4"
        )
    return devices * nodes


def derive_run_values(cfg: DictConfig) -> DerivedValues:
    """Per-device batch and the learning rate actually used, from the global batch and the lr rule."""
    world = world_size(cfg.trainer)
    batch = int(cfg.data.batch_size)
    if batch // world < 2:  # NT-Xent needs a second image in the step for negatives
        raise ConfigError(
            f"data.batch_size={batch} leaves {batch // world} image per process and step, and NT-Xent needs at "
            f"least 2 (the other images are the negatives); the smallest valid value is data.batch_size={2 * world}"
        )
    if batch % world:
        raise ConfigError(
            f"data.batch_size={batch} (the global batch) must be a positive multiple of the "
            f"{world} devices x nodes; e.g. data.batch_size={max(world, batch - batch % world)}"
        )
    opt = cfg.optimizer
    lr = scaled_lr(float(opt.lr), str(opt.lr_scaling), batch, int(opt.base_batch_size))
    return DerivedValues(world_size=world, global_batch=batch, per_device_batch=batch // world, lr=lr)


# Lightning advice that does not apply to either job: evaluation batches are slices of in-memory
# tensors (no workers needed), and augmentation lives in the modules' on_after_batch_transfer and
# training_step on purpose. Advice that applies to one job only is silenced around that job's fit
# (`probe_fit_warnings`), so that, say, a pretraining module left in eval mode still warns.
_EXPECTED_WARNINGS = (
    r".*does not have many workers.*",
    r".*overridden `on_after_batch_transfer` in `LightningModule`.*",
    # Under bf16-mixed the parameters stay float32, so the summary's 32-bit size estimate is the true one.
    r".*Precision bf16-mixed is not supported by the model summary.*",
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
    `choose_precision`'s (trainer.precision=auto resolved here, in this one place, and logged)."""
    silence_expected_warnings()
    logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") else False
    # Entries with a _target_ (plugins, extra callbacks) are instantiated; the rest are plain kwargs.
    kwargs = hydra.utils.instantiate(cfg.trainer, _convert_="all")
    callbacks = [*(kwargs.pop("callbacks", None) or []), *callbacks]
    if kwargs.get("enable_progress_bar", True):
        callbacks.append(HostMetricsProgressBar())  # Lightning's own bar reads the loss on every step
    plugins = [*(kwargs.pop("plugins", None) or []), AtomicCheckpointIO()]
    precision = choose_precision(cfg.trainer)
    log.info("precision %s (%s)", precision.value, precision.why)
    kwargs["precision"] = precision.value
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


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_status(out: Path, status: str, wall_s: float, error: str | None = None) -> None:
    """<out>/status.json, written whole or not at all; on a full disk it is skipped (the console has the error)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) > 0:
        return  # under torchrun, SLURM or Lightning's DDP launcher only the first process reports
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    record = {"status": status, "error": error, "overrides": overrides, "wall_s": wall_s}
    try:
        atomic_write_text(out / "status.json", json.dumps(record, indent=2) + "\n")
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise


def finish_wandb(failed: bool) -> None:
    """Closes the W&B run of this job, if any, so that each job of a multirun gets its own run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=1 if failed else 0)


def record_in_log_files(message: str) -> None:
    """Adds the error to the job's log file (Hydra's train_ssl.log) and nowhere else: the console shows it
    once, from the `error:` line."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
