"""The SimCLR pretraining LightningModule: device-side views, encoder + head, NT-Xent, kNN monitor."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl
import torch
from torch.optim.lr_scheduler import LambdaLR

from simclr.data.cifar import NUM_CLASSES
from simclr.data.datamodule import TensorBatches
from simclr.errors import ConfigError
from simclr.evaluation.features import extract_features
from simclr.evaluation.knn import knn_predict
from simclr.models.collectives import gather
from simclr.models.conv_grad import convert_small_convs
from simclr.models.loss import NTXentLoss
from simclr.models.nets import ProjectionHead, build_encoder
from simclr.training import randomness
from simclr.training.optim import build_optimizer, schedule_length, warmup_cosine
from simclr.training.progress import is_log_step
from simclr.views.augment import AugmentParams, build_augment

log = logging.getLogger("simclr")


class SimCLRModule(pl.LightningModule):
    """SimCLR on uint8 batches from `CIFAR10DataModule`.

    Args (each one config group or section, as plain mappings):
        model: `arch`, `width`, `zero_init_residual`, `channels_last`, `matmul_weight_grad` (small CPU
            convolutions' weight gradients as one matmul: `simclr.models.conv_grad`), `head` (ProjectionHead kwargs).
        augmentation: SimCLRAugment kwargs, plus `backend` ("device": views made in the training step from
            uint8 batches; "torchvision": batches are (view1, view2, labels, indices) made by the data
            module's workers) and `num_workers` (read by the data module). optimizer: `name` and its hyperparameters.
        loss: `temperature`. scheduler: `warmup_epochs`, `final_lr_fraction`. knn: `k`, `temperature`.
        lr: the learning rate actually used, already scaled for the global batch (see `derive_run_values`).
        seed: the run's seed; each process draws its augmentations from a generator seeded by (seed, rank).

    The training step reads nothing on the host: augmentation parameters are drawn on the device, the
    loss is logged as a device tensor (the loggers read it on log steps), and `train/lr` is logged on
    log steps only. With `model.compile=true` the whole device part of the step (both views'
    augmentation, encoder, head, NT-Xent) is one `torch.compile`d function.

    Logs `train/loss` each step, `train/lr` on log steps, `time/epoch_s` and `time/views_per_s` (both
    views counted, all devices) each epoch, `time/first_step_s` once (cuDNN autotuning, and compilation
    with `model.compile=true`), `val/knn_top1` (in [0, 1]) every validation epoch (`test/knn_top1` when the
    data module holds no validation set, data.val_size=0), and `test/knn_top1` once when training ends.
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
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = build_encoder(**model)
        if model.get("matmul_weight_grad", True):
            convert_small_convs(self.encoder)  # the same parameters and state_dict keys
        self.head = ProjectionHead(self.encoder.feature_dim, **model.get("head", {}))
        # backend "device": views made here from uint8 batches; "torchvision": the batches are views already.
        self.views_on_device = augmentation.get("backend", "device") == "device"
        self.augment = build_augment(augmentation)
        self.criterion = NTXentLoss(**loss)
        self.memory_format = torch.channels_last if model.get("channels_last", True) else torch.contiguous_format
        self.to(memory_format=self.memory_format)
        # Compiling a method, not wrapping the nets, keeps state_dict keys and checkpoints those of the
        # plain modules. Parameters are drawn outside it (eagerly), so compiled and eager runs of one
        # seed see the same crops and colours.
        self.views_loss, self.pair_loss = self._views_loss, self._pair_loss
        if model.get("compile", False):
            mode = model.get("compile_mode", "default")
            self.views_loss, self.pair_loss = (torch.compile(f, mode=mode) for f in (self._views_loss, self._pair_loss))
        self._val_outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        self._bank: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (step, features, labels) of the monitor
        self.generator: torch.Generator | None = None  # made on the device when fitting starts
        self._saved_generators: dict | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (B, 3, H, W) -> backbone features (B, feature_dim)."""
        return self.encoder(images.contiguous(memory_format=self.memory_format))

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer.training:
            return batch  # uint8: the views are made in the training step, where compilation reaches them
        images, labels, indices = batch
        return self.augment.normalize(images), labels, indices

    def _views_loss(self, images: torch.Tensor, first: AugmentParams, second: AugmentParams) -> torch.Tensor:
        """uint8 images (B, 3, H, W) and two parameter draws -> NT-Xent of the two views (scalar float32)."""
        return self._pair_loss(self.augment.apply(images, first), self.augment.apply(images, second))

    def _pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Two float views (B, 3, H, W) of the same images -> NT-Xent (scalar float32).

        Both views go through the encoder in one batch of 2B (BatchNorm sees both views).
        """
        z1, z2 = self.head(self(torch.cat([view1, view2]))).chunk(2)
        return self.criterion(z1, z2)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        if self.views_on_device:
            images = batch[0]
            b, _, h, w = images.shape
            first, second = (self.augment.sample_params(b, h, w, images.device, self.generator) for _ in range(2))
            loss = self.views_loss(images, first, second)
        else:  # augmentation.backend=torchvision: the loader's workers made the views
            view1, view2 = batch[0], batch[1]
            b = len(view1)
            loss = self.pair_loss(view1, view2)
        # prog_bar=False: Lightning would read a prog_bar value on the host after every step.
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=b)
        if is_log_step(self.trainer):  # a Python float becomes a device tensor: only when the logs are read
            self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_fit_start(self) -> None:
        self._check_knn_bank()
        rank, world = self.trainer.global_rank, self.trainer.world_size
        self.generator = randomness.new_generator(self.hparams.seed, rank, self.device)
        if self._saved_generators is not None:
            randomness.restore(self.generator, self._saved_generators, self.hparams.seed, rank, world, self.global_step)
            self._saved_generators = None

    def _check_knn_bank(self) -> None:
        """Refuses, before the first step, a monitor asking for more neighbours than its bank holds."""
        bank = getattr(self.trainer.datamodule, "fit_set", None)
        k = self.hparams.knn.get("k", 200)
        if bank is not None and self.trainer.limit_val_batches != 0 and k > len(bank):
            raise ConfigError(
                f"knn.k={k} asks for more neighbours than the {len(bank)} images of the kNN bank (the training "
                f"split minus data.val_size); lower knn.k, e.g. knn.k={min(200, len(bank))}"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.generator is not None:
            checkpoint[randomness.CHECKPOINT_KEY] = {"states": randomness.gathered_states(self, self.generator)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Restored in on_fit_start, once the generator exists on this process's device.
        self._saved_generators = checkpoint.get(randomness.CHECKPOINT_KEY)

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
        self._epoch_images += len(batch[0])
        if self.global_step == 1 and hasattr(self, "_first_step_start"):
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per run, before steady state
            seconds = time.perf_counter() - self._first_step_start
            self.log("time/first_step_s", seconds, on_step=False, on_epoch=True, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        self._mark_train_end()
        seconds = self._train_end - self._epoch_start
        # sync_dist: the mean over processes (one all-reduce an epoch), so every process logs the same value.
        self.log("time/epoch_s", seconds, sync_dist=True)
        self.log("time/views_per_s", 2 * self._epoch_images * self.trainer.world_size / seconds, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == "fit":
            self._mark_train_end()
        self._val_outputs = {0: [], 1: []}

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels, indices = batch
        # Lightning's loop already runs in eval mode, under no_grad and the precision context.
        self._val_outputs[dataloader_idx].append((extract_features(self, [images]), labels, indices))

    def on_validation_epoch_end(self) -> None:
        """The kNN monitor: `val/knn_top1` (bank: the training split minus the validation set; queries:
        the validation set), or `test/knn_top1` with data.val_size=0 (bank: the whole training split)."""
        if not self._val_outputs.get(0) or not self._val_outputs.get(1):
            return
        (bank, bank_labels, _), (query, query_labels, _) = (self._gather(self._val_outputs[i]) for i in (0, 1))
        self._val_outputs = {}
        self._bank = (self.global_step, bank, bank_labels)  # the test evaluation at the end reuses it
        top1 = self._knn_top1(query, query_labels, bank, bank_labels)
        self.log(f"{self._monitor_split()}/knn_top1", top1, prog_bar=True, rank_zero_only=True)

    def on_train_end(self) -> None:
        """The final encoder's figures: `test/knn_top1` once, and `val/knn_top1` where the monitor did not run on
        the last epoch (trainer.check_val_every_n_epoch need not divide trainer.max_epochs), so that every run
        ends with a validation figure to select on. Both against the monitor's bank.

        Runs on every process (each takes a shard, then all gather), after the last epoch; `self.log`
        is closed here, so the values go to the loggers and `trainer.callback_metrics` directly.
        Skipped with trainer.limit_val_batches=0 (no kNN evaluation at all).
        """
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "test_set", None) is None or getattr(datamodule, "fit_set", None) is None:
            return
        if self.trainer.limit_val_batches == 0:  # evaluation switched off (trainer.limit_val_batches=0)
            return
        if self._bank is not None and self._bank[0] == self.global_step:
            _, bank, bank_labels = self._bank  # the monitor ran on these very weights
        else:
            bank, bank_labels, _ = self._features_of(datamodule.fit_set, datamodule.eval_batch_size)
            if getattr(datamodule, "val_set", None) is not None:  # the monitor's last run was epochs ago
                self._final_knn("val", datamodule.val_set, bank, bank_labels)
        self._bank = None
        self._final_knn("test", datamodule.test_set, bank, bank_labels)

    def _final_knn(self, split: str, dataset: TensorBatches, bank: torch.Tensor, bank_labels: torch.Tensor) -> None:
        """`<split>/knn_top1` of the final encoder, sent to the loggers and `trainer.callback_metrics`."""
        query, query_labels, _ = self._features_of(dataset, self.trainer.datamodule.eval_batch_size)
        top1 = self._knn_top1(query, query_labels, bank, bank_labels).cpu()
        self.trainer.callback_metrics[f"{split}/knn_top1"] = top1
        for lg in self.loggers:
            lg.log_metrics({f"{split}/knn_top1": float(top1)}, step=self.global_step)

    def _monitor_split(self) -> str:
        """Where the monitor's queries come from: "val", or "test" without a validation set (data.val_size=0)."""
        return getattr(self.trainer.datamodule, "monitor_split", "val")

    def _knn_top1(
        self, query: torch.Tensor, query_labels: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor
    ) -> torch.Tensor:
        """Fraction of queries whose weighted-kNN class (`knn.k`, `knn.temperature`) is their label, on the device."""
        pred = knn_predict(query, bank, bank_labels, NUM_CLASSES, **self.hparams.knn)
        return (pred == query_labels).float().mean()

    def _features_of(self, dataset: TensorBatches, batch_size: int) -> tuple[torch.Tensor, ...]:
        """Features, labels and indices of a whole dataset: this process's shard, then all of them."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        n = len(dataset)
        # Shards of equal length, padded with repeated images as DistributedSampler does; _all_ranks drops them.
        positions = (torch.arange(-(-n // world) * world) % n)[rank::world]
        rows = dataset.ids[positions] if dataset.ids is not None else positions
        batches = (dataset.images[chunk] for chunk in rows.split(batch_size))
        context = self.trainer.precision_plugin.forward_context()
        feats = extract_features(self, batches, self.device, normalize=self.augment.normalize, context=context)
        return self._all_ranks(feats, dataset.labels[rows].to(self.device), rows.to(self.device))

    def _gather(self, outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        """Concatenates this rank's features, labels and indices, then those of all ranks."""
        feats = torch.cat([f for f, _, _ in outputs]).float()
        labels = torch.cat([y for _, y, _ in outputs])
        indices = torch.cat([i for _, _, i in outputs])
        return self._all_ranks(feats, labels, indices)

    def _all_ranks(self, feats: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """All processes' rows, in dataset order, each image once.

        Under DDP every process holds an equal-length shard, padded with repeated images (Lightning's
        DistributedSampler, or `_features_of`); the repeats are dropped, so the bank and the queries
        are exactly those of one process.
        """
        if self.trainer.world_size > 1:
            feats, labels, indices = (gather(t) for t in (feats, labels, indices))
        order = indices.argsort(stable=True)
        first = torch.ones_like(order, dtype=torch.bool)
        first[1:] = indices[order][1:] != indices[order][:-1]
        keep = order[first]
        return feats[keep], labels[keep], indices[keep]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self, self.hparams.optimizer, self.hparams.lr)
        total, warmup = schedule_length(self.trainer, float(self.hparams.scheduler.get("warmup_epochs", 0)))
        final = float(self.hparams.scheduler.get("final_lr_fraction", 0.0))
        self.schedule_steps = {"derived/total_steps": total, "derived/warmup_steps": warmup}
        log.info("learning-rate schedule: %d warm-up steps, then cosine to step %d", warmup, total)
        for lg in self.loggers:
            lg.log_hyperparams(self.schedule_steps)
        schedule = LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, final))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
