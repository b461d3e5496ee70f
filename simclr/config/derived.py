"""Values derived from a composed config, computed in this one place and logged with the run: the number
of processes, the per-device batch, the learning rate scaled to the global batch, and the evaluation batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from simclr.config.schema import LrScaling, choices
from simclr.errors import ConfigError


@dataclass(frozen=True)
class DerivedValues:
    """Values computed from the config, in this one place, and logged with the run.

    `data.batch_size` is the GLOBAL batch: images per optimizer step over all devices and nodes.
    """

    world_size: int
    global_batch: int
    per_device_batch: int
    lr: float
    eval_batch: int

    def as_log_dict(self) -> dict[str, float | int]:
        return {f"derived/{k}": v for k, v in asdict(self).items()}


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes taking part in training: trainer.devices x trainer.num_nodes (integers required)."""
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    if not isinstance(devices, int) or devices < 1 or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(
            f"trainer.devices={devices!r} and trainer.num_nodes={nodes!r} must be positive integers "
            f"(the global batch is split over devices x nodes), e.g. trainer.devices=4"
        )
    return devices * nodes


def derive_run_values(cfg: DictConfig) -> DerivedValues:
    """Per-device batch and the learning rate actually used, from the global batch and the lr rule."""
    world = world_size(cfg.trainer)
    batch = int(cfg.data.batch_size)
    if batch // world < 2:  # NT-Xent needs a second image in the step for negatives
        raise ConfigError(
            f"data.batch_size={batch} leaves {batch // world} image per process and step, and NT-Xent needs at "
            f"least 2 (the other images are the negatives); the smallest valid value is data.batch_size={2 * world}"
        )
    if batch % world:
        raise ConfigError(
            f"data.batch_size={batch} (the global batch) must be a positive multiple of the "
            f"{world} devices x nodes; e.g. data.batch_size={max(world, batch - batch % world)}"
        )
    opt = cfg.optimizer
    lr = scaled_lr(float(opt.lr), str(opt.lr_scaling), batch, int(opt.base_batch_size))
    return DerivedValues(
        world_size=world, global_batch=batch, per_device_batch=batch // world, lr=lr, eval_batch=eval_batch_size(cfg)
    )


# Images per evaluation batch when data.eval_batch_size is null. On the 2-core Xeon (AMX, bf16 autocast) a
# frozen resnet_tiny extracts 32 x 32 features 1.9-2.5x faster in batches of 128 than of 1,024 (width 16: 7,485
# against 2,975 images/s; width 32: 2,566 against 1,327; benchmarks/eval_batch.py): oneDNN's convolutions then
# work from the cache. A GPU wants large batches; 1,024 is what its figures were measured with.
CPU_EVAL_BATCH, ACCELERATOR_EVAL_BATCH = 128, 1024


def eval_batch_size(cfg: DictConfig) -> int:
    """Images per evaluation batch on one device (kNN bank and queries, the probe's features):
    `data.eval_batch_size`, or where it is null 128 on the CPU and 1024 on an accelerator."""
    given = cfg.data.get("eval_batch_size")
    if given is not None:
        return int(given)
    return CPU_EVAL_BATCH if runs_on_cpu(cfg.trainer) else ACCELERATOR_EVAL_BATCH


def runs_on_cpu(trainer_cfg: Any) -> bool:
    """Whether the Trainer the config describes runs on the CPU: `trainer.accelerator` cpu (the default), or
    auto where CUDA is not available."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def scaled_lr(lr: float, scaling: str, global_batch: int, base_batch: int) -> float:
    """The learning rate actually used: `lr` is the rate at `base_batch` images per step.

    linear: lr * global_batch / base_batch (Goyal et al.); sqrt: lr * sqrt(global_batch / base_batch),
    SimCLR's choice for LARS at small batches; none: lr unchanged.
    """
    if scaling not in choices(LrScaling):
        raise ConfigError(f"optimizer.lr_scaling={scaling!r} is not known; choose one of {choices(LrScaling)}")
    ratio = global_batch / base_batch
    return lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[scaling]
