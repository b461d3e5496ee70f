"""The linear probe as a job: of a pretraining checkpoint, of a random encoder, or of a fresh encoder."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from simclr.config.derived import eval_batch_size
from simclr.data.datamodule import CIFAR10DataModule
from simclr.errors import ConfigError
from simclr.evaluation.figures import RunFigures
from simclr.jobs.reporting import output_dir
from simclr.models.nets import CifarResNet, build_encoder
from simclr.storage import atomic_write_text
from simclr.training.checkpoints import ConfigInCheckpoint, SplitInCheckpoint, find_checkpoint, load_pretrained_encoder
from simclr.training.precision import choose_precision
from simclr.training.probe import LinearProbe
from simclr.training.trainer import build_trainer, probe_fit_warnings, resolved_config

PROBE_KWARGS = ("mode", "optimizer", "lr", "momentum", "weight_decay", "crop_scale", "batch_norm", "flip_average")


def probe_encoder(cfg: DictConfig) -> tuple[CifarResNet, dict[str, Any]]:
    """The encoder to probe and a description of where it came from.

    `ckpt=PATH` rebuilds it from the checkpoint's own config; `model=NAME` (and no ckpt) builds a
    randomly initialised encoder of that architecture, seeded by `seed`: the baseline for comparisons.
    """
    if cfg.get("ckpt") and cfg.get("model"):
        raise ConfigError(
            "pass either ckpt=PATH (the architecture comes from the checkpoint) or model=NAME "
            "(a randomly initialised encoder), not both"
        )
    if cfg.get("ckpt"):
        ckpt = find_checkpoint(cfg.ckpt)  # a file, or a run directory: its checkpoints/last.ckpt
        encoder, ssl_config = load_pretrained_encoder(ckpt)
        return encoder, pretrained_source(ssl_config, str(ckpt.resolve()))
    if cfg.get("model"):
        pl.seed_everything(cfg.seed)
        plain = OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True)
        return build_encoder(**plain), {"encoder": "random", "ckpt": None, "model": plain}
    raise ConfigError(
        "nothing to probe: pass ckpt=PATH to a pretraining checkpoint (runs/ssl/.../checkpoints/last.ckpt), "
        "or model=NAME (e.g. model=resnet18) to probe a randomly initialised encoder"
    )


def pretrained_source(ssl_config: dict[str, Any], ckpt: str | None) -> dict[str, Any]:
    return {
        "encoder": "pretrained",
        "ckpt": ckpt,
        "model": ssl_config["model"],
        "pretrain_epochs": ssl_config["trainer"].get("max_epochs"),
        "run_name": ssl_config.get("name"),
        "pretrain_split": ssl_config.get("split"),
    }


def fit_probe(encoder: CifarResNet, source: dict[str, Any], cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Trains the probe on the training split minus the validation set, then reports validation and test
    top-1, with cfg's data, probe, trainer and logger; writes out/results.json.

    `cfg.trainer.max_epochs` is the number of probe epochs and `probe.batch_size` its batch (not
    data.batch_size). Returns the results (top-1 as fractions; `val_top1` is None with data.val_size=0).
    """
    start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    probe_cfg = OmegaConf.to_container(cfg.probe, resolve=True, enum_to_str=True)
    eval_batch = eval_batch_size(cfg)  # images per feature-extraction batch: null means chosen for the device
    data = {**cfg.data, "batch_size": probe_cfg["batch_size"], "eval_batch_size": eval_batch}
    datamodule = CIFAR10DataModule(**data, seed=cfg.seed, purpose="probe", batch_key="probe.batch_size")
    probe = LinearProbe(encoder, **{k: probe_cfg[k] for k in PROBE_KWARGS})
    config = {**resolved_config(cfg), "source": source}
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="probe", save_last=False)
    callbacks = [checkpoints, ConfigInCheckpoint(config, kind="probe"), SplitInCheckpoint(), RunFigures(out)]
    trainer = build_trainer(cfg, callbacks)
    for lg in trainer.loggers:
        lg.log_hyperparams(config)
    with probe_fit_warnings():
        trainer.fit(probe, datamodule=datamodule)
    train_top1 = float(trainer.callback_metrics["train/top1"])
    val_top1 = None
    if datamodule.val_set is not None:
        val_top1 = float(trainer.validate(probe, datamodule=datamodule, verbose=False)[0]["val/top1"])
    test_top1 = float(trainer.test(probe, datamodule=datamodule, verbose=False)[0]["test/top1"])
    if datamodule.split is None:  # fitted in spawned processes: the split is the same here
        datamodule.setup("fit")
    split = datamodule.split.record()
    pretrain_split = source.get("pretrain_split")
    results = {
        "val_top1": val_top1,
        "test_top1": test_top1,
        "train_top1": train_top1,
        "selection": split["selection"],
        "protocol": probe_cfg["protocol"],
        "mode": probe_cfg["mode"],
        "probe": probe_cfg,
        "probe_epochs": int(cfg.trainer.max_epochs),
        "eval_batch_size": eval_batch,
        "split": split,
        # None: no split is recorded with the encoder (a random one, or a checkpoint whose config has no `split`).
        "same_split_as_pretraining": None if not pretrain_split else pretrain_split == split,
        "wall_s": time.perf_counter() - start,
        **choose_precision(cfg.trainer).record(),
        **source,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    model = source["model"]
    val = f"val top-1 {100 * val_top1:.2f}%" if val_top1 is not None else "no validation split (data.val_size=0)"
    print(
        f"linear probe: test top-1 {100 * test_top1:.2f}% | {val} | {model['arch']} width {model['width']}, "
        f"{source['encoder']} encoder{' from ' + source['ckpt'] if source['ckpt'] else ''} | "
        f"protocol {probe_cfg['protocol']} ({probe_cfg['mode']}{' flip-averaged' if probe_cfg['flip_average'] else ''} "
        f"features, {probe_cfg['optimizer']}), "
        f"{cfg.trainer.max_epochs} epochs, {results['wall_s']:.0f} s | {out / 'results.json'}"
    )
    return results


def train_linear(cfg: DictConfig) -> dict[str, Any]:
    """`train_linear.py`: the probe of `ckpt` or of a random `model`, in cfg.paths.output_dir."""
    encoder, source = probe_encoder(cfg)
    return fit_probe(encoder, source, cfg, output_dir(cfg))


def probe_after_pretraining(
    cfg: DictConfig, encoder: CifarResNet, run_dir: Path, ckpt: Path, split: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Probes a just-pretrained encoder on one device, in <run_dir>/linear/final/, logging to CSV there.

    `split`: the record of the pretraining run's validation split (the probe's is the same for the same
    seed and data.val_size; results.json says whether it is)."""
    probe_cfg = copy.deepcopy(cfg)
    with_probe = OmegaConf.create(
        {
            "trainer": {"max_epochs": cfg.probe.epochs, "devices": 1, "num_nodes": 1, "callbacks": None},
            "paths": {"output_dir": str(run_dir / "linear" / "final")},
            "logger": {
                "_target_": "simclr.training.csv_logger.AppendingCSVLogger",
                "save_dir": "${paths.output_dir}",
                "name": "",
                "version": "",
            },
        }
    )
    OmegaConf.set_struct(probe_cfg, False)
    probe_cfg.pop("logger", None)  # the probe logs to its own CSV; its results go to the run's logger
    probe_cfg = OmegaConf.merge(probe_cfg, with_probe)
    # One device: the pretraining run's multi-process settings go back to the Trainer's defaults.
    probe_cfg.trainer.update(strategy="auto", sync_batchnorm=False, plugins=None)
    out = output_dir(probe_cfg)
    source = pretrained_source({**resolved_config(cfg), "split": split}, str(ckpt.resolve()))
    return fit_probe(copy.deepcopy(encoder), source, probe_cfg, out)
