"""Callbacks the tests attach through `trainer.callbacks` (importable by spawned processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class RecordBatches(pl.Callback):
    """Saves, per process and epoch, the dataset indices of the training batches and the loss dtypes."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.indices: list[torch.Tensor] = []
        self.loss_dtypes: set[str] = set()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.indices.append(batch[2].cpu() if len(batch) == 3 else torch.empty(0))
        self.loss_dtypes.add(str(outputs["loss"].dtype))
        if not torch.isfinite(outputs["loss"]):
            raise AssertionError(f"non-finite loss at step {trainer.global_step}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "indices": torch.cat(self.indices),
            "loss_dtypes": sorted(self.loss_dtypes),
            "world_size": trainer.world_size,
        }
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt")
        self.indices, self.loss_dtypes = [], set()


class SlowDown(pl.Callback):
    """Sleeps after each training batch, so that a test can signal a run in the middle of an epoch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        import time

        time.sleep(self.seconds)


class PoisonWeights(pl.Callback):
    """Sets the first parameter tensor to NaN before optimizer step `step`: a forced divergence."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).mul_(float("nan"))
