"""The SimCLR pretraining LightningModule: device-side views, encoder + head, NT-Xent, kNN monitor."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import LambdaLR

from simclr.augment import build_augment
from simclr.data import NUM_CLASSES
from simclr.knn import knn_predict
from simclr.loss import NTXentLoss
from simclr.nets import ProjectionHead, build_encoder
from simclr.optim import build_optimizer, warmup_cosine


class SimCLRModule(pl.LightningModule):
    """SimCLR on uint8 batches from `CIFAR10DataModule`.

    Args (each one config group or section, as plain mappings):
        model: `arch`, `width`, `zero_init_residual`, `channels_last`, `head` (ProjectionHead kwargs).
        augmentation: SimCLRAugment kwargs. optimizer: `name` and its hyperparameters.
        loss: `temperature`. scheduler: `warmup_epochs`, `final_lr_fraction`. knn: `k`, `temperature`.
        lr: the learning rate actually used, already scaled for the global batch (see `derive_run_values`).

    Logs `train/loss`, `train/lr` each step, `time/epoch_s` and `time/views_per_s` (both views counted,
    all devices) each epoch, and `val/knn_top1` (in [0, 1]) every validation epoch.
    """

    def __init__(
        self,
        model: dict[str, Any],
        augmentation: dict[str, Any],
        optimizer: dict[str, Any],
        loss: dict[str, Any],
        scheduler: dict[str, Any],
        knn: dict[str, Any],
        lr: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = build_encoder(**model)
        self.head = ProjectionHead(self.encoder.feature_dim, **model.get("head", {}))
        self.augment = build_augment(augmentation)
        self.criterion = NTXentLoss(**loss)
        self.memory_format = torch.channels_last if model.get("channels_last", True) else torch.contiguous_format
        self.to(memory_format=self.memory_format)
        if model.get("compile", False):
            # In place (nn.Module.compile), so state_dict keys and checkpoints stay those of the plain nets.
            self.encoder.compile()
            self.head.compile()
        self._val_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, 3, H, W) -> backbone features (B, feature_dim)."""
        return self.encoder(images.contiguous(memory_format=self.memory_format))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, indices = batch
        if self.trainer.training:
            # Both views in one tensor, so the encoder runs once over 2B images (BN sees both views).
            return torch.cat([self.augment(images), self.augment(images)]), labels, indices
        return self.augment.normalize(images), labels, indices

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        views, labels, _ = batch
        z1, z2 = self.head(self(views)).chunk(2)
        loss = self.criterion(z1, z2)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(labels))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_start, self._epoch_images, self._train_end = time.perf_counter(), 0, None

    def _mark_train_end(self) -> None:
        """Stops the epoch clock once, before the kNN monitor runs (Lightning validates first)."""
        if getattr(self, "_train_end", None) is None and hasattr(self, "_epoch_start"):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per epoch: the clock must see the queued kernels
            self._train_end = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._epoch_images += len(batch[1])

    def on_train_epoch_end(self) -> None:
        self._mark_train_end()
        seconds = self._train_end - self._epoch_start
        self.log("time/epoch_s", seconds)
        self.log("time/views_per_s", 2 * self._epoch_images * self.trainer.world_size / seconds)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == "fit":
            self._mark_train_end()
        self._val_outputs = {0: [], 1: []}

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels, _ = batch
        self._val_outputs[dataloader_idx].append((self(images), labels))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs.get(0) or not self._val_outputs.get(1):
            return
        (bank, bank_labels), (query, query_labels) = (self._gather(self._val_outputs[i]) for i in (0, 1))
        pred = knn_predict(query, bank, bank_labels, NUM_CLASSES, **self.hparams.knn)
        self.log("val/knn_top1", (pred == query_labels).float().mean(), prog_bar=True, rank_zero_only=True)
        self._val_outputs = {}

    def _gather(self, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenates this rank's features and labels, then those of all ranks."""
        feats = torch.cat([f for f, _ in outputs]).float()
        labels = torch.cat([y for _, y in outputs])
        if self.trainer.world_size > 1:
            feats, labels = self.all_gather(feats).flatten(0, 1), self.all_gather(labels).flatten(0, 1)
        return feats, labels

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self, self.hparams.optimizer, self.hparams.lr)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        warmup = int(round(self.hparams.scheduler.get("warmup_epochs", 0) * steps_per_epoch))
        final = float(self.hparams.scheduler.get("final_lr_fraction", 0.0))
        schedule = LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, final))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
