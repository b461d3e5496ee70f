"""`is_log_step` follows Lightning's own rule for when metrics go to the loggers, read from public counters."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from simclr.training.progress import is_log_step


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class CompareWithLightning(pl.Callback):
    """At each batch hook: (ours, Lightning's private `should_update_logs`), which the test may read."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, bool, bool]] = []

    def _compare(self, hook: str, trainer: pl.Trainer, ours: bool) -> None:
        self.pairs.append((hook, ours, bool(trainer._logger_connector.should_update_logs)))

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._compare("start", trainer, is_log_step(trainer))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._compare("end", trainer, is_log_step(trainer, step_taken=True))


def test_log_steps_are_lightnings_at_every_hook(tmp_path: Any) -> None:
    data = TensorDataset(torch.randn(40, 4), torch.randn(40, 1))
    record = CompareWithLightning()
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=3,
        callbacks=[record],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Regression(), DataLoader(data, batch_size=8))  # 5 steps an epoch: log steps 3, 6, 9
    assert len(record.pairs) == 20
    assert [ours for _, ours, theirs in record.pairs] == [theirs for _, ours, theirs in record.pairs]
    assert sum(ours for hook, ours, _ in record.pairs if hook == "end") == 3
