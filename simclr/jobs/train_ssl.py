"""`train_ssl(cfg)`: SimCLR pretraining from a composed Hydra config, returning its final metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from simclr.config.derived import derive_run_values
from simclr.data.datamodule import CIFAR10DataModule
from simclr.evaluation.figures import RunFigures, log_image
from simclr.jobs.export import log_encoder_artifact
from simclr.jobs.optuna_trial import trial_reporter
from simclr.jobs.reporting import output_dir
from simclr.jobs.sweep import objective
from simclr.jobs.train_linear import probe_after_pretraining
from simclr.storage import atomic_write_text
from simclr.training.checkpoints import ConfigInCheckpoint, SplitInCheckpoint
from simclr.training.precision import choose_precision
from simclr.training.pretrain import SimCLRModule
from simclr.training.pruning import PruneOnMonitor
from simclr.training.resilience import DivergenceGuard, RNGStateInCheckpoint, RunInterrupted, refuse_foreign_run_dir
from simclr.training.resume import resume_checkpoint
from simclr.training.trainer import build_trainer, log, resolved_config
from simclr.views.torchvision_reference import torchvision_pipeline


def build_module(cfg: DictConfig, lr: float) -> SimCLRModule:
    """The pretraining module from the config sections it uses, at the derived learning rate."""
    sections = ("model", "augmentation", "optimizer", "loss", "scheduler", "knn")
    return SimCLRModule(
        **{s: OmegaConf.to_container(cfg[s], resolve=True, enum_to_str=True) for s in sections}, lr=lr, seed=cfg.seed
    )


def build_datamodule(cfg: DictConfig, per_device_batch: int, eval_batch: int) -> CIFAR10DataModule:
    """The pretraining data: uint8 batches for the on-device views, or per-image torchvision views in CPU
    workers with augmentation.backend=torchvision."""
    aug = OmegaConf.to_container(cfg.augmentation, resolve=True, enum_to_str=True)
    views = torchvision_pipeline(aug) if aug["backend"] == "torchvision" else None
    data = {**cfg.data, "batch_size": per_device_batch, "eval_batch_size": eval_batch}
    return CIFAR10DataModule(**data, seed=cfg.seed, views=views, view_workers=aug["num_workers"])


def train_ssl(cfg: DictConfig) -> dict[str, float]:
    """Pretrains an encoder; checkpoints go to <output_dir>/checkpoints/. Returns the logged metrics."""
    start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    derived = derive_run_values(cfg)
    out = Path(cfg.paths.output_dir)
    # Fails early, before anything is written; ckpt_path=auto steps back past a damaged last.ckpt.
    found = resume_checkpoint(cfg.get("ckpt_path"), out, resolved_config(cfg)["model"])
    resume = found[0] if found else None
    refuse_foreign_run_dir(out, resume)
    out = output_dir(cfg)
    datamodule = build_datamodule(cfg, derived.per_device_batch, derived.eval_batch)
    module = build_module(cfg, derived.lr)
    config = {**resolved_config(cfg), "derived": derived.as_log_dict()}
    callbacks = [
        checkpoint_callback(cfg, out),
        ConfigInCheckpoint(config, kind="pretrain"),
        SplitInCheckpoint(),  # after ConfigInCheckpoint: adds the validation split's record to its config
        RNGStateInCheckpoint(),
        DivergenceGuard(cfg.divergence.check_every_n_steps),
        RunFigures(out),
    ]
    reporter = trial_reporter()  # a trial of an Optuna study with a pruner: val/knn_top1 goes to the study
    pruning = PruneOnMonitor(reporter) if reporter is not None else None
    trainer = build_trainer(cfg, [*callbacks, pruning] if pruning else callbacks)
    log.info("derived values: %s", derived)
    for lg in trainer.loggers:
        lg.log_hyperparams({**config, **derived.as_log_dict()})
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except SIGTERMException as e:
        raise RunInterrupted(
            f"stopped by SIGTERM at step {trainer.global_step}; {out / 'checkpoints' / 'last.ckpt'} holds the last "
            f"completed epoch: resume with ckpt_path=last hydra.run.dir={out}"
        ) from e
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["pretrain_wall_s"] = time.perf_counter() - start
    if datamodule.split is None:  # fitted in spawned processes (ddp_spawn): the split is the same here
        datamodule.setup("fit")
    split = datamodule.split.record()
    if pruning is not None and pruning.pruned_at is not None:
        metrics["pruned_at_epoch"] = pruning.pruned_at  # a losing trial: no probe, its figures as they stood
    elif cfg.probe.enabled:
        metrics.update(probe_and_log(cfg, module, trainer, out, split))
    metrics["wall_s"] = time.perf_counter() - start
    if trainer.is_global_zero:  # under torchrun or SLURM every rank runs this function
        write_results(out, metrics, split, choose_precision(cfg.trainer).record())
        log.info(
            "pretraining done in %.0f s: %s; checkpoints in %s", metrics["wall_s"], _fmt(metrics), out / "checkpoints"
        )
        atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log_encoder_artifact(trainer, out / "checkpoints" / "last.ckpt", metrics)  # with logger=wandb only
    return metrics


def checkpoint_callback(cfg: DictConfig, out: Path) -> ModelCheckpoint:
    """last.ckpt after every epoch; epochNNNN.ckpt every `checkpoint.every_n_epochs`, the newest `keep` kept."""
    return ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="epoch{epoch:04d}",
        auto_insert_metric_name=False,
        every_n_epochs=cfg.checkpoint.every_n_epochs,
        save_top_k=cfg.checkpoint.keep,
        monitor="epoch" if cfg.checkpoint.keep > 0 else None,
        mode="max",
        save_last=True,
        save_on_train_epoch_end=True,  # every epoch, whether or not the kNN monitor ran
    )


def probe_and_log(
    cfg: DictConfig, module: SimCLRModule, trainer: pl.Trainer, out: Path, split: dict[str, Any] | None = None
) -> dict[str, float]:
    """Probes the final encoder and sends its accuracies and confusion matrix to the run's loggers."""
    probe = probe_after_pretraining(cfg, module.encoder, out, out / "checkpoints" / "last.ckpt", split)
    metrics = {"probe/test_top1": probe["test_top1"], "probe/train_top1": probe["train_top1"]}
    if probe["val_top1"] is not None:
        metrics["probe/val_top1"] = probe["val_top1"]
    for lg in trainer.loggers:
        lg.log_metrics(metrics, step=trainer.global_step)
        lg.save()
    confusion = out / "linear" / "final" / "figures" / "probe_confusion_matrix.png"
    log_image(trainer, "probe/confusion_matrix", np.asarray(Image.open(confusion).convert("RGB")), out)
    return metrics


def write_results(
    out: Path, metrics: dict[str, Any], split: dict[str, Any], precision: dict[str, str]
) -> dict[str, Any]:
    """<run>/results.json: the final validation and test figures, the objective, the split they used and the
    precision the run computed in (`Precision.record()`)."""
    name, value = objective(metrics)
    results = {
        "selection": split["selection"],
        "objective": value,
        "objective_metric": name,
        "val_knn_top1": metrics.get("val/knn_top1"),
        "test_knn_top1": metrics.get("test/knn_top1"),
        "probe_val_top1": metrics.get("probe/val_top1"),
        "probe_test_top1": metrics.get("probe/test_top1"),
        "final_loss": metrics.get("train/loss_epoch"),
        "pruned_at_epoch": metrics.get("pruned_at_epoch"),  # a trial its study's pruner stopped; else None
        "split": split,
        "wall_s": metrics.get("wall_s"),
        **precision,
    }
    if split["selection"] == "test":
        log.warning(
            "data.val_size=0: the kNN monitor ran on the test split (test/knn_top1) and there is no validation "
            "metric to select on; results.json records selection=test"
        )
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _fmt(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4f}"
        for k, v in sorted(metrics.items())
        if k.startswith(("train/loss_epoch", "val/", "test/", "probe/"))
    )
