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

from simclr.checkpoints import ConfigInCheckpoint, load_pretrained_encoder
from simclr.data import CIFAR10DataModule
from simclr.errors import ConfigError
from simclr.figures import RunFigures
from simclr.nets import CifarResNet, build_encoder
from simclr.probe import LinearProbe
from simclr.runs import build_trainer, output_dir, resolved_config

PROBE_KWARGS = ("mode", "lr", "weight_decay", "crop_scale", "batch_norm")


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
        return encoder, pretrained_source(ssl_config, str(Path(cfg.ckpt).resolve()))
    if cfg.get("model"):
        pl.seed_everything(cfg.seed)
        plain = OmegaConf.to_container(cfg.model, resolve=True)
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
    }


def fit_probe(encoder: CifarResNet, source: dict[str, Any], cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Trains and tests the probe with cfg's data, probe, trainer and logger; writes out/results.json.

    `cfg.trainer.max_epochs` is the number of probe epochs. Returns the results (top-1 as fractions).
    """
    start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = CIFAR10DataModule(**cfg.data, seed=cfg.seed)
    probe = LinearProbe(encoder, **{k: OmegaConf.to_container(cfg.probe, resolve=True)[k] for k in PROBE_KWARGS})
    config = {**resolved_config(cfg), "source": source}
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="probe", save_last=False)
    trainer = build_trainer(cfg, [checkpoints, ConfigInCheckpoint(config, kind="probe"), RunFigures(out)])
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


def train_linear(cfg: DictConfig) -> dict[str, Any]:
    """`train_linear.py`: the probe of `ckpt` or of a random `model`, in cfg.paths.output_dir."""
    encoder, source = probe_encoder(cfg)
    return fit_probe(encoder, source, cfg, output_dir(cfg))


def probe_after_pretraining(cfg: DictConfig, encoder: CifarResNet, run_dir: Path, ckpt: Path) -> dict[str, Any]:
    """Probes a just-pretrained encoder on one device, in <run_dir>/linear/final/, logging to CSV there."""
    probe_cfg = copy.deepcopy(cfg)
    with_probe = OmegaConf.create(
        {
            "trainer": {"max_epochs": cfg.probe.epochs, "devices": 1, "num_nodes": 1, "callbacks": None},
            "paths": {"output_dir": str(run_dir / "linear" / "final")},
            "logger": {
                "_target_": "simclr.loggers.AppendingCSVLogger",
                "save_dir": "${paths.output_dir}",
                "name": "",
                "version": "",
            },
        }
    )
    OmegaConf.set_struct(probe_cfg, False)
    probe_cfg.pop("logger", None)  # the probe logs to its own CSV; its results go to the run's logger
    probe_cfg = OmegaConf.merge(probe_cfg, with_probe)
    for key in ("strategy", "sync_batchnorm", "plugins"):
        probe_cfg.trainer.pop(key, None)
    out = output_dir(probe_cfg)
    source = pretrained_source(resolved_config(cfg), str(ckpt.resolve()))
    return fit_probe(copy.deepcopy(encoder), source, probe_cfg, out)
