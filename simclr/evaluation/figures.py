"""A callback that draws the run's figures into <run dir>/figures/ and into image-capable loggers.

Pretraining: augmented view pairs when training starts, a 2-D map of test embeddings when it ends.
Probe: the test confusion matrix. Loggers: W&B (log_image) and TensorBoard (add_image); the PNGs are
written in any case, so the CSV logger's runs have them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from simclr.evaluation.features import extract_features
from simclr.evaluation.visuals import confusion_figure, embedding_map, figure_to_array, view_pairs
from simclr.storage import atomic_write


def log_image(trainer: pl.Trainer, key: str, image: np.ndarray, out_dir: Path) -> Path:
    """Saves an HWC uint8 image as out_dir/figures/<key>.png and sends it to image-capable loggers."""
    path = out_dir / "figures" / f"{key.replace('/', '_')}.png"
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format="PNG"))  # never half a PNG
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[image], step=trainer.global_step)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_image(key, image, trainer.global_step, dataformats="HWC")
    return path


class RunFigures(pl.Callback):
    """Figures of a pretraining run (view pairs, embedding map) or of a probe (confusion matrix)."""

    def __init__(self, out_dir: str | Path, num_pairs: int = 8, map_points: int = 2000) -> None:
        self.out_dir, self.num_pairs, self.map_points = Path(out_dir), num_pairs, map_points

    @torch.no_grad()
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(pl_module, "head"):
            return
        images = trainer.datamodule.train_set.images[: self.num_pairs].to(pl_module.device)
        log_image(trainer, "views/pairs", view_pairs(images, pl_module.augment), self.out_dir)

    @torch.no_grad()
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not hasattr(pl_module, "head"):
            return
        test = trainer.datamodule.test_set
        feats = extract_features(
            pl_module,
            test.images[: self.map_points],
            pl_module.device,
            normalize=pl_module.augment.normalize,
            context=trainer.precision_plugin.forward_context(),
            batch_size=500,
        )
        fig = embedding_map(
            feats, test.labels[: len(feats)], f"test embeddings (PCA) after {trainer.current_epoch} epochs"
        )
        log_image(trainer, "embeddings/test_pca", figure_to_array(fig), self.out_dir)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        matrix = getattr(pl_module, "confusion", None)
        if trainer.is_global_zero and matrix is not None:
            log_image(trainer, "probe/confusion_matrix", figure_to_array(confusion_figure(matrix)), self.out_dir)
