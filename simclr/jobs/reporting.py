"""How a job leaves its outcome behind: the output directory, status.json (written whole or not at all),
the error in the job's log file, and the W&B run of a job that ends (failed or not).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from simclr.jobs.ranks import is_first_process
from simclr.storage import NO_SPACE, atomic_write_text
from simclr.training.trainer import log


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_status(out: Path, status: str, wall_s: float, error: str | None = None, epoch: int | None = None) -> None:
    """<out>/status.json, written whole or not at all; on a full disk it is skipped (the console has the error).
    `status`: completed, failed, or pruned (a trial its study's pruner stopped after `epoch` epochs)."""
    if not is_first_process():
        return  # under torchrun, SLURM or Lightning's DDP launcher only the first process reports
    # As typed: an override's value may itself hold `${...}`, which is the job's to resolve, not this record's.
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    record = {"status": status, "error": error, "overrides": overrides, "wall_s": wall_s}
    if epoch is not None:
        record["epoch"] = epoch
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
