"""Stopping a run that a sweep's pruner says will lose: the validation monitor reported after every epoch it
runs, the decision taken on global rank 0 and shared with every rank.

The callback knows nothing of Optuna: it calls `report(epoch, value) -> bool` (True: stop), which the job
builds from its study (simclr/jobs/optuna_trial.py). Lightning stops at the end of the epoch whose
validation said so, after that epoch's checkpoint is written (`trainer.should_stop`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl

MONITOR = "val/knn_top1"


class PruneOnMonitor(pl.Callback):
    """Reports `val/knn_top1` at each validation epoch (as the number of epochs trained, 1-based) and stops the
    run where `report` returns True; `pruned_at` is then that epoch, else None."""

    def __init__(self, report: Callable[[int, float], bool]) -> None:
        self.report = report
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch + 1
        stop = False
        if trainer.is_global_zero:  # one process talks to the study; every process stops together
            stop = bool(self.report(epoch, float(trainer.callback_metrics[MONITOR])))
        if trainer.strategy.broadcast(stop, src=0):
            self.pruned_at = epoch
            trainer.should_stop = True
