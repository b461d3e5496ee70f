"""The one description of the configs: typed dataclasses that Hydra composes onto.

Types, choices and keys are OmegaConf's to check. `conf/train_ssl.yaml` and `conf/train_linear.yaml`
start their defaults lists with `train_ssl_schema` / `train_linear_schema`, so every group option, preset
and command-line value is merged onto these dataclasses while Hydra composes: a wrong type
(`data.batch_size=abc`), a choice outside its Enum (`model.arch=vgg`) or a key the node's dataclass lacks
(`optimizer.lrr=1`) raises OmegaConf's ValidationError / ConfigKeyError, which simclr/jobs/cli.py turns into
one line. Each optimizer has its own dataclass (conf/optimizer/*.yaml select theirs as `/schema/optimizer/
<name>`), so `optimizer=sgd optimizer.betas=[0.9,0.99]` is refused as a key SGD does not have. `trainer` is
every argument of the installed Lightning Trainer, read from its signature (simclr/config/signature_schema.py):
`trainer.enable_progress_bar=maybe` is refused, `trainer.deterministic=true` needs no `+`. `logger` stays an
open mapping (a `_target_` and its arguments).

What a type cannot say (numeric ranges, values that go together) is in simclr/config/rules.py, beside this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II

from simclr.config.signature_schema import trainer_schema

TrainerConfig = trainer_schema()  # Lightning's Trainer arguments, typed from its signature


class Choice(str, Enum):
    """A config choice: compares, hashes and prints as its name (names equal values), e.g. 'resnet18'."""

    def __str__(self) -> str:
        return self.value


Arch = Choice("Arch", [(a, a) for a in ("resnet18", "resnet34", "resnet50", "resnet_tiny")])
OutputNorm = Choice("OutputNorm", [(a, a) for a in ("affine", "scale", "none")])
Backend = Choice("Backend", [(a, a) for a in ("device", "torchvision")])
LrScaling = Choice("LrScaling", [(a, a) for a in ("linear", "sqrt", "none")])
ProbeMode = Choice("ProbeMode", [(a, a) for a in ("cached", "augmented")])
ProbeOptimizer = Choice("ProbeOptimizer", [(a, a) for a in ("adam", "sgd")])


def choices(enum: type[Enum]) -> list[str]:
    return [m.value for m in enum]


# ---- schemas ----------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    root: str = "data"  # holds cifar-10-batches-py/
    download: bool = True
    batch_size: int = 512  # GLOBAL batch: images per optimizer step over all devices
    eval_batch_size: int | None = None  # per device; None: 128 on the CPU, 1024 on an accelerator (config.derived)
    val_size: int = 5000  # training images held out for validation (checked against the data at setup)
    num_workers: int = 0
    pin_memory: bool = True


@dataclass
class HeadConfig:
    hidden_dim: int = 2048
    out_dim: int = 128
    num_layers: int = 2
    batch_norm: bool = True  # after the hidden layers
    output_norm: OutputNorm = OutputNorm.affine  # scale: official SimCLR; none: the v1 paper


@dataclass
class ModelConfig:
    arch: Arch = Arch.resnet18
    width: int = 64  # channels of the first stage
    zero_init_residual: bool = False
    channels_last: bool = True
    matmul_weight_grad: bool = True  # CPU: small convolutions' weight gradients as one matmul (models/conv_grad.py)
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's modes have dashes, which Enum names cannot: simclr/config/rules.py
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass
class AugmentationConfig:
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # fraction of the image area
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4 / 3])
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # turns of the hue circle
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # pixels
    blur_kernel_size: int = 3
    size: int | None = None  # side of each view in pixels; None: the image's (32)
    backend: Backend = Backend.device  # torchvision: the per-image reference path, in CPU workers
    num_workers: int = 2  # CPU processes making views with backend=torchvision


@dataclass
class OptimizerConfig:  # what every optimizer reads; each optimizer's dataclass adds its own keys
    name: str = "adam"
    lr: float = 1e-3  # at base_batch_size images per step
    base_batch_size: int = 256
    lr_scaling: LrScaling = LrScaling.none
    weight_decay: float = 1e-6
    exclude_bias_and_norm: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class LARSConfig(OptimizerConfig):
    name: str = "lars"
    momentum: float = 0.9
    trust_coefficient: float = 0.001


OPTIMIZERS: dict[str, type[OptimizerConfig]] = {s.name: s for s in (AdamConfig, AdamWConfig, SGDConfig, LARSConfig)}


@dataclass
class LossConfig:
    temperature: float = 0.5
    gather_distributed: bool = True


@dataclass
class SchedulerConfig:
    warmup_epochs: float = 10.0
    final_lr_fraction: float = 0.0


@dataclass
class KnnConfig:
    k: int = 200
    temperature: float = 0.1


@dataclass
class DivergenceConfig:
    check_every_n_steps: int = II("trainer.log_every_n_steps")


@dataclass
class CheckpointConfig:
    every_n_epochs: int = 50
    keep: int = -1  # -1 keeps all


@dataclass
class ProbeConfig:
    enabled: bool = False  # train_ssl.py only
    protocol: str = "cached_adam"  # a name recorded in results
    epochs: int = 100
    mode: ProbeMode = ProbeMode.cached
    optimizer: ProbeOptimizer = ProbeOptimizer.adam
    lr: float = 8e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    batch_size: int = 4096
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # augmented mode only
    batch_norm: bool = True
    flip_average: bool = False


@dataclass
class PathsConfig:
    output_dir: str = II("hydra:runtime.output_dir")


@dataclass
class TrainSSLConfig:  # conf/train_ssl.yaml: SimCLR pretraining
    name: str = "default"
    seed: int = 0
    ckpt_path: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # each group option sets its own
    loss: LossConfig = field(default_factory=LossConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # Lightning Trainer arguments
    logger: dict[str, Any] | None = None  # a Lightning logger (_target_ and its arguments)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class TrainLinearConfig:  # conf/train_linear.yaml: the probe of a checkpoint (ckpt) or a random encoder (model)
    ckpt: str | None = None
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: dict[str, Any] | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)


# The primary config's schema of each entry point (conf/<name>.yaml).
PRIMARY_SCHEMAS: dict[str, type] = {"train_ssl": TrainSSLConfig, "train_linear": TrainLinearConfig}


def register_schemas() -> None:
    """Stores the two primary schemas, one schema per optimizer (group `schema/optimizer`), and the Hydra
    callback that checks a single run before it writes anything. Must run before Hydra composes."""
    store = ConfigStore.instance()
    store.store(name="train_ssl_schema", node=TrainSSLConfig)
    store.store(name="train_linear_schema", node=TrainLinearConfig)
    for name, schema in OPTIMIZERS.items():
        store.store(group="schema/optimizer", name=name, node=schema)
    callback = {"check_config": {"_target_": "simclr.jobs.cli.CheckConfig"}}
    store.store(group="hydra/callbacks", name="check_config", node=callback)


register_schemas()
