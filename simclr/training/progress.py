"""When the host may read training values, and a progress bar that never waits for the device.

On a GPU, reading a tensor's value on the host (`.item()`, `float()`) makes the CPU wait until the
device has finished every queued kernel, so the next step's kernels are launched with the GPU idle.
The training step therefore reads nothing; values cross to the host only on the steps where Lightning
sends metrics to the loggers (every `trainer.log_every_n_steps` steps).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar


def is_log_step(trainer: pl.Trainer, step_taken: bool = False) -> bool:
    """Whether this training batch's metrics go to the loggers: Lightning's rule (the batch's optimizer step,
    counted from 1, a multiple of `trainer.log_every_n_steps`, or the run stopping), so a host read made on
    such a step adds no wait of its own (the loggers read the values on this step anyway).

    `trainer.global_step` counts the optimizer steps taken: during a batch (`on_train_batch_start`,
    `training_step`) this batch's step is global_step + 1; once it is taken (`on_train_batch_end`,
    `step_taken=True`) it is global_step."""
    every = trainer.log_every_n_steps
    if every == 0:
        return False
    step = trainer.global_step + (0 if step_taken else 1)
    return step % every == 0 or trainer.should_stop


class HostMetricsProgressBar(TQDMProgressBar):
    """TQDM progress bar that shows the training loss without waiting for the device.

    Lightning converts every per-step value logged with `prog_bar=True` with `.item()` after every
    step, one host-device synchronisation per step, so per-step values are logged without it
    (`SimCLRModule` logs `train/loss` so). This bar reads the step's loss itself on log steps only,
    next to the loggers' own read of the same step, so the `loss` it shows is at most
    `trainer.log_every_n_steps` steps old and costs no wait of its own.
    """

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self._loss: float | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and is_log_step(trainer, step_taken=True):
            self._loss = float(loss)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        shown = super().get_metrics(trainer, pl_module)
        return {"loss": round(self._loss, 4), **shown} if self._loss is not None else shown
