"""The linear probe: one nn.Linear trained on the features of a frozen encoder."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from simclr.config.schema import ProbeMode, ProbeOptimizer, choices
from simclr.data.cifar import NUM_CLASSES
from simclr.errors import ConfigError
from simclr.evaluation.features import extract_features
from simclr.views.augment import SimCLRAugment


class LinearProbe(pl.LightningModule):
    """Trains `nn.Linear(feature_dim, 10)` on backbone features of a frozen encoder.

    The encoder never trains: its parameters have requires_grad=False, it stays in eval mode (so
    BatchNorm uses, and never updates, its running statistics), and features are computed under no_grad.

    mode "cached": features of the un-augmented training and test images are computed once (the whole
        training split, in order, so that training and validation batches index the same table), and
        batches only index them, so an epoch costs a few matrix products.
    mode "augmented": each training batch is randomly resized-cropped (scale `crop_scale`, ratio 3/4 to
        4/3, output 32 x 32) and flipped on the device before the frozen encoder; validation and test
        images are only normalised.
    `flip_average`: the probe reads each image's features averaged with its mirror image's, in training
    and evaluation alike (two encoder passes per image; `extract_features`).
    `batch_norm` puts a BatchNorm1d without affine parameters before the linear layer. `optimizer`
    "adam" (betas 0.9, 0.999) or "sgd" (with `momentum`, no Nesterov), at `lr`, cosine-annealed to 0
    over the run, stepped per batch; `weight_decay` on the linear layer.

    Batches keep their indices (into the training or test split) through `on_after_batch_transfer`:
    (features, labels, indices). Logs `train/loss`, `train/top1`, `val/top1` and `test/top1`
    (fractions in [0, 1]).
    """

    def __init__(
        self,
        encoder: nn.Module,
        mode: str = "cached",
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        batch_norm: bool = True,
        flip_average: bool = False,
    ) -> None:
        super().__init__()
        if mode not in choices(ProbeMode):
            raise ConfigError(f"probe.mode={mode!r} is not known; choose one of {choices(ProbeMode)}")
        if optimizer not in choices(ProbeOptimizer):
            raise ConfigError(f"probe.optimizer={optimizer!r} is not known; choose one of {choices(ProbeOptimizer)}")
        crop_scale = tuple(float(v) for v in crop_scale)
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ConfigError(f"probe.crop_scale={list(crop_scale)} must be [lo, hi] with 0 < lo <= hi <= 1")
        if lr <= 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ConfigError(
                f"probe.lr={lr} must be > 0, probe.weight_decay={weight_decay} >= 0 and "
                f"probe.momentum={momentum} in [0, 1)"
            )
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder.requires_grad_(False).eval()
        # BatchNorm without affine parameters standardises the features (as MAE's probe does); at test
        # time it is a fixed affine map, so the classifier stays linear in the features.
        norm = nn.BatchNorm1d(encoder.feature_dim, affine=False) if batch_norm else nn.Identity()
        self.classifier = nn.Sequential(norm, nn.Linear(encoder.feature_dim, NUM_CLASSES))
        self.augment = SimCLRAugment(crop_scale=crop_scale, jitter_p=0.0, grayscale_p=0.0)
        self.train_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, top_k=1, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, top_k=1, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, top_k=1, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes=NUM_CLASSES)
        self.confusion: torch.Tensor | None = None  # (10, 10) counts, rows = true class, after testing
        self._cache: dict[str, torch.Tensor] = {}  # "train" (whole training split), "test": (N, D) features

    def train(self, mode: bool = True) -> LinearProbe:
        """Lightning puts the module in train mode each epoch; the encoder stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, 3, H, W) -> frozen backbone features (B, feature_dim), float32."""
        return extract_features(
            self.encoder,
            [images],
            context=self.trainer.precision_plugin.forward_context(),
            flip_average=self.hparams.flip_average,
        )

    def cached_features(self, split: str) -> torch.Tensor:
        """Features of every image of the "train" or "test" split, in dataset order, computed once."""
        if split not in self._cache:
            datamodule = self.trainer.datamodule
            dataset = datamodule.train_set if split == "train" else datamodule.test_set
            self._cache[split] = extract_features(
                self.encoder,
                dataset.images,
                self.device,
                normalize=self.augment.normalize,
                context=self.trainer.precision_plugin.forward_context(),
                batch_size=datamodule.eval_batch_size,
                flip_average=self.hparams.flip_average,
            )
        return self._cache[split]

    def on_fit_start(self) -> None:
        if self.hparams.mode == "cached":
            self.cached_features("train")

    def on_validation_start(self) -> None:
        if self.hparams.mode == "cached":
            self.cached_features("train")  # the validation images are training-split images

    def on_test_start(self) -> None:
        if self.hparams.mode == "cached":
            self.cached_features("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels, indices = batch
        if self.hparams.mode == "cached":
            return self._cache["test" if self.trainer.testing else "train"][indices], labels, indices
        if self.trainer.training:
            return self.features(self.augment(images)), labels, indices
        return self.features(self.augment.normalize(images)), labels, indices

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (B, feature_dim) -> class scores (B, 10), float32 even under bf16 autocast: the features
        may be bf16 (simclr/training/precision.py), the one trained layer is not."""
        with torch.autocast(self.device.type, enabled=False):
            return self.classifier(feats.float())

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        feats, labels, _ = batch
        logits = self.logits(feats)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        self.log("train/top1", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        feats, labels, _ = batch
        self.val_acc(self.logits(feats), labels)
        self.log("val/top1", self.val_acc, on_step=False, on_epoch=True)

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        feats, labels, _ = batch
        logits = self.logits(feats)
        self.test_acc(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/top1", self.test_acc, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        params, hp = self.classifier.parameters(), self.hparams
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        schedule = CosineAnnealingLR(opt, T_max=max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
