"""The linear probe: one nn.Linear trained on the features of a frozen encoder."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from simclr.augment import SimCLRAugment
from simclr.data import NUM_CLASSES
from simclr.errors import ConfigError

MODES = ("cached", "augmented")


class LinearProbe(pl.LightningModule):
    """Trains `nn.Linear(feature_dim, 10)` on backbone features of a frozen encoder.

    The encoder never trains: its parameters have requires_grad=False, it stays in eval mode (so
    BatchNorm uses, and never updates, its running statistics), and features are computed under no_grad.

    mode "cached": features of the un-augmented train and test images are computed once, when fitting
        and testing start, and batches only index them, so an epoch costs a few matrix products.
    `batch_norm` puts a BatchNorm1d without affine parameters before the linear layer.

    mode "augmented": each training batch is randomly cropped (scale `crop_scale`) and flipped on the
        device before the frozen encoder; test images are only normalised.

    Logs `train/loss`, `train/top1` and `test/top1` (fractions in [0, 1]).
    """

    def __init__(
        self,
        encoder: nn.Module,
        mode: str = "cached",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"probe.mode={mode!r} is not known; choose one of {list(MODES)}")
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder.requires_grad_(False).eval()
        # BatchNorm without affine parameters standardises the features (as MAE's probe does); at test
        # time it is a fixed affine map, so the classifier stays linear in the features.
        norm = nn.BatchNorm1d(encoder.feature_dim, affine=False) if batch_norm else nn.Identity()
        self.classifier = nn.Sequential(norm, nn.Linear(encoder.feature_dim, NUM_CLASSES))
        self.augment = SimCLRAugment(crop_scale=tuple(crop_scale), jitter_p=0.0, grayscale_p=0.0)
        self.train_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, top_k=1, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, top_k=1, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes=NUM_CLASSES)
        self.confusion: torch.Tensor | None = None  # (10, 10) counts, rows = true class, after testing
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> LinearProbe:
        """Lightning puts the module in train mode each epoch; the encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, 3, H, W) -> frozen backbone features (B, feature_dim), float32."""
        with self.trainer.precision_plugin.forward_context():
            return self.encoder(images).float()

    @torch.no_grad()
    def _features_of(self, loader: DataLoader) -> torch.Tensor:
        """Features of a whole unshuffled split, in dataset order: (N, feature_dim) on this device."""
        out = [self.features(self.augment.normalize(images.to(self.device))) for images, _, _ in loader]
        return torch.cat(out)

    def on_fit_start(self) -> None:
        if self.hparams.mode == "cached" and "train" not in self._cache:
            self._cache["train"] = self._features_of(self.trainer.datamodule.train_eval_dataloader())

    def on_test_start(self) -> None:
        if self.hparams.mode == "cached" and "test" not in self._cache:
            self._cache["test"] = self._features_of(self.trainer.datamodule.test_dataloader())

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, indices = batch
        split = "train" if self.trainer.training else "test"
        if split in self._cache:
            return self._cache[split][indices], labels
        if self.trainer.training and self.hparams.mode == "augmented":
            return self.features(self.augment(images)), labels
        return self.features(self.augment.normalize(images)), labels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        feats, labels = batch
        logits = self.classifier(feats)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        self.log("train/top1", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        feats, labels = batch
        logits = self.classifier(feats)
        self.test_acc(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/top1", self.test_acc, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.Adam(self.classifier.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = CosineAnnealingLR(opt, T_max=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
