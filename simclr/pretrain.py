"""The SimCLR pretraining LightningModule: device-side views, encoder + head, NT-Xent, kNN monitor."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import LambdaLR

from simclr.augment import AugmentParams, build_augment
from simclr.data import NUM_CLASSES
from simclr.knn import knn_predict
from simclr.loss import NTXentLoss
from simclr.nets import ProjectionHead, build_encoder
from simclr.optim import build_optimizer, warmup_cosine
from simclr.progress import is_log_step


class SimCLRModule(pl.LightningModule):
    """SimCLR on uint8 batches from `CIFAR10DataModule`.

    Args (each one config group or section, as plain mappings):
        model: `arch`, `width`, `zero_init_residual`, `channels_last`, `head` (ProjectionHead kwargs).
        augmentation: SimCLRAugment kwargs. optimizer: `name` and its hyperparameters.
        loss: `temperature`. scheduler: `warmup_epochs`, `final_lr_fraction`. knn: `k`, `temperature`.
        lr: the learning rate actually used, already scaled for the global batch (see `derive_run_values`).

    The training step reads nothing on the host: augmentation parameters are drawn on the device, the
    loss is logged as a device tensor (the loggers read it on log steps), and `train/lr` is logged on
    log steps only. With `model.compile=true` the whole device part of the step (both views'
    augmentation, encoder, head, NT-Xent) is one `torch.compile`d function.

    Logs `train/loss` each step, `train/lr` on log steps, `time/epoch_s` and `time/views_per_s` (both
    views counted, all devices) each epoch, `time/first_step_s` once (cuDNN autotuning, and compilation
    with `model.compile=true`), and `val/knn_top1` (in [0, 1]) every validation epoch.
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
        # Compiling a method, not wrapping the nets, keeps state_dict keys and checkpoints those of the
        # plain modules. Parameters are drawn outside it (eagerly), so compiled and eager runs of one
        # seed see the same crops and colours.
        self.views_loss = self._views_loss
        if model.get("compile", False):
            self.views_loss = torch.compile(self._views_loss, mode=model.get("compile_mode", "default"))
        self._val_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, 3, H, W) -> backbone features (B, feature_dim)."""
        return self.encoder(images.contiguous(memory_format=self.memory_format))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer.training:
            return batch  # uint8: the views are made in the training step, where compilation reaches them
        images, labels, indices = batch
        return self.augment.normalize(images), labels, indices

    def _views_loss(self, images: torch.Tensor, first: AugmentParams, second: AugmentParams) -> torch.Tensor:
        """uint8 images (B, 3, H, W) and two parameter draws -> NT-Xent of the two views (scalar float32).

        Both views go through the encoder in one batch of 2B (BatchNorm sees both views).
        """
        views = torch.cat([self.augment.apply(images, first), self.augment.apply(images, second)])
        z1, z2 = self.head(self(views)).chunk(2)
        return self.criterion(z1, z2)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        b, _, h, w = images.shape
        first, second = (self.augment.sample_params(b, h, w, images.device) for _ in range(2))
        loss = self.views_loss(images, first, second)
        # prog_bar=False: Lightning would read a prog_bar value on the host after every step.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=b)
        if is_log_step(self.trainer):  # a Python float becomes a device tensor: only when the logs are read
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.global_step == 0 and not hasattr(self, "_first_step_start"):
            self._first_step_start = time.perf_counter()

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
        if self.global_step == 1 and hasattr(self, "_first_step_start"):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per run, before steady state
            seconds = time.perf_counter() - self._first_step_start
            self.log("time/first_step_s", seconds, on_step=False, on_epoch=True)

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
