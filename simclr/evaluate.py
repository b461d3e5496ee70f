"""`train_linear(cfg)`: the linear probe of a pretraining checkpoint, or of a random encoder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from simclr.checkpoints import ConfigInCheckpoint, load_pretrained_encoder
from simclr.data import CIFAR10DataModule
from simclr.errors import ConfigError
from simclr.nets import CifarResNet, build_encoder
from simclr.probe import LinearProbe
from simclr.runs import build_trainer, output_dir, resolved_config


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
        encoder, ssl_config = load_pretrained_encoder(cfg.ckpt)
        source = {
            "encoder": "pretrained",
            "ckpt": str(Path(cfg.ckpt).resolve()),
            "model": ssl_config["model"],
            "pretrain_epochs": ssl_config["trainer"].get("max_epochs"),
            "run_name": ssl_config.get("name"),
        }
        return encoder, source
    if cfg.get("model"):
        pl.seed_everything(cfg.seed)
        plain = resolved_config(cfg)["model"]
        return build_encoder(**plain), {"encoder": "random", "ckpt": None, "model": plain}
    raise ConfigError(
        "nothing to probe: pass ckpt=PATH to a pretraining checkpoint (runs/ssl/.../checkpoints/last.ckpt), "
        "or model=NAME (e.g. model=resnet18) to probe a randomly initialised encoder"
    )


def train_linear(cfg: DictConfig) -> dict[str, Any]:
    """Trains the probe, tests it, writes <output_dir>/results.json and returns the results."""
    start = time.perf_counter()
    encoder, source = probe_encoder(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    out = output_dir(cfg)
    datamodule = CIFAR10DataModule(**cfg.data)
    probe = LinearProbe(encoder, **OmegaConf.to_container(cfg.probe, resolve=True))
    config = {**resolved_config(cfg), "source": source}
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="probe", save_last=False)
    trainer = build_trainer(cfg, [checkpoints, ConfigInCheckpoint(config, kind="probe")])
    for lg in trainer.loggers:
        lg.log_hyperparams(config)
    trainer.fit(probe, datamodule=datamodule)
    train_top1 = float(trainer.callback_metrics["train/top1"])
    test_top1 = float(trainer.test(probe, datamodule=datamodule, verbose=False)[0]["test/top1"])
    results = {
        "test_top1": test_top1,
        "train_top1": train_top1,
        "mode": cfg.probe.mode,
        "probe_epochs": int(cfg.trainer.max_epochs),
        "wall_s": time.perf_counter() - start,
        **source,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    model = source["model"]
    print(
        f"linear probe: test top-1 {100 * test_top1:.2f}% | {model['arch']} width {model['width']}, "
        f"{source['encoder']} encoder{' from ' + source['ckpt'] if source['ckpt'] else ''} | "
        f"{cfg.probe.mode} features, {cfg.trainer.max_epochs} epochs, {results['wall_s']:.0f} s | "
        f"{out / 'results.json'}"
    )
    return results
