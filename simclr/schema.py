"""The configs' types (dataclass schemas in Hydra's ConfigStore) and their ranges (`validate`).

Types. `conf/train_ssl.yaml` and `conf/train_linear.yaml` list `train_ssl_schema` / `train_linear_schema`
first in their defaults lists, so Hydra merges every group option, preset and command-line value onto
these dataclasses: a value of the wrong type (`data.batch_size=abc`) or a key that no schema has
(`optimizer.lrr=1`) is refused while the config is composed (one forced in with `+optimizer.lrr=1` is
refused by `validate`), and the composed config holds real ints, floats and bools. Each config group is
one dataclass (data, model + model.head, augmentation, optimizer, probe) and so is each top-level
section (loss, scheduler, knn, divergence, checkpoint, paths). Two groups stay open mappings: `trainer`
(any Lightning Trainer argument, added with `+trainer.KEY=VALUE`) and `logger` (any Lightning logger).
`validate` checks the Trainer arguments this project relies on (max_epochs, max_steps,
check_val_every_n_epoch, log_every_n_steps, num_sanity_val_steps, limit_train_batches, devices and
num_nodes); accelerator, precision, strategy and the rest are Lightning's to check (simclr.runs).

The defaults here are the values of the default options (cifar10, resnet18, simclr, adam, cached_adam
and the sections of train_ssl.yaml); tests/test_schema.py holds them equal. Fields that only some
options of a group use (`optimizer.betas`, `momentum`, `nesterov`, `trust_coefficient`) default to
None, and `validate` refuses them set where the chosen optimizer does not use them.

Ranges. `validate(cfg)` checks every numeric knob (rates, epochs, steps, warm-up, k, temperatures,
probabilities, sizes, widths, momentum, ...) and every name, and raises `ConfigError` with one line,
`<key>=<value> must be <range>; <fix>`. The scripts call it before Hydra writes anything for a single
run, and first thing in each job of a multirun (see simclr/cli.py). The modules (augment, nets, loss,
optim, probe, data) keep their own checks for direct use of their APIs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from simclr.errors import ConfigError, first_line

# ---- schemas ----------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    root: str = "data"  # holds cifar-10-batches-py/
    download: bool = True
    batch_size: int = 512  # GLOBAL batch: images per optimizer step over all devices
    eval_batch_size: int = 1024  # per device
    val_size: int = 5000  # training images held out for validation; < the training images (checked at setup)
    num_workers: int = 0
    pin_memory: bool = True


@dataclass
class HeadConfig:
    hidden_dim: int = 2048
    out_dim: int = 128
    num_layers: int = 2
    batch_norm: bool = True  # after the hidden layers
    output_norm: str = "affine"  # BatchNorm on the output: affine | scale (official SimCLR) | none (v1 paper)


@dataclass
class ModelConfig:
    arch: str = "resnet18"
    width: int = 64  # channels of the first stage
    zero_init_residual: bool = False
    channels_last: bool = True
    compile: bool = False
    compile_mode: str = "default"
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
    backend: str = "device"  # device | torchvision (the per-image reference path, in CPU workers)
    num_workers: int = 2  # CPU processes making views with backend=torchvision


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1e-3  # at base_batch_size images per step
    base_batch_size: int = 256
    lr_scaling: str = "none"
    weight_decay: float = 1e-6
    exclude_bias_and_norm: bool = False
    betas: list[float] | None = None  # adam, adamw
    momentum: float | None = None  # sgd, lars
    nesterov: bool | None = None  # sgd
    trust_coefficient: float | None = None  # lars


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
    mode: str = "cached"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    batch_size: int = 512
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # augmented mode only
    batch_norm: bool = True


@dataclass
class PathsConfig:
    output_dir: str = II("hydra:runtime.output_dir")


@dataclass
class TrainSSLConfig:
    """conf/train_ssl.yaml: SimCLR pretraining."""

    name: str = "default"
    seed: int = 0
    ckpt_path: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # Lightning Trainer arguments
    logger: dict[str, Any] | None = None  # a Lightning logger (_target_ and its arguments)
    paths: PathsConfig = field(default_factory=PathsConfig)


@dataclass
class TrainLinearConfig:
    """conf/train_linear.yaml: the linear probe of a checkpoint (ckpt) or of a random encoder (model)."""

    ckpt: str | None = None
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trainer: dict[str, Any] = field(default_factory=dict)
    logger: dict[str, Any] | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)


SCHEMAS = {"train_ssl_schema": TrainSSLConfig, "train_linear_schema": TrainLinearConfig}


def register_schemas() -> None:
    """Stores the two schemas, and the Hydra callback that validates a run before it writes anything.

    The primary configs select them in their defaults lists (`- train_ssl_schema`, `- override
    hydra/callbacks: check_config`); this must run before Hydra composes (importing `simclr.schema` does).
    """
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
    callback = {"check_config": {"_target_": "simclr.cli.CheckConfig"}}
    store.store(group="hydra/callbacks", name="check_config", node=callback)


register_schemas()


# ---- describing a schema field (for the error messages of composition) ------------------------------


def field_type(key: str) -> Any | None:
    """The annotated type of a dotted key in either schema (e.g. "data.batch_size" -> int), or None."""
    for schema in (TrainSSLConfig, TrainLinearConfig):
        typ: Any = schema
        for part in key.split("."):
            typ = _strip_optional(typ)
            if not dataclasses.is_dataclass(typ):
                typ = None
                break
            hints = typing.get_type_hints(typ)
            if part not in hints:
                typ = None
                break
            typ = hints[part]
        if typ is not None:
            return typ
    return None


def field_default(key: str) -> Any:
    """The schema's default of a dotted key (a plain value), or None where it has none."""
    parent, _, name = key.rpartition(".")
    for schema in (TrainSSLConfig, TrainLinearConfig):
        try:
            node = OmegaConf.select(OmegaConf.structured(schema), parent) if parent else OmegaConf.structured(schema)
            if isinstance(node, DictConfig) and name in node and not OmegaConf.is_interpolation(node, name):
                value = node[name]
                return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
        except OmegaConfBaseException:
            continue
    return None


def describe_type(typ: Any) -> str:
    """'an integer', 'a number', 'true or false', 'a string', 'a list of numbers', with 'or null'."""
    optional = typ is not _strip_optional(typ)
    base = _strip_optional(typ)
    origin = typing.get_origin(base)
    if base is bool:
        text = "true or false"
    elif base is int:
        text = "an integer"
    elif base is float:
        text = "a number"
    elif base is str:
        text = "a string"
    elif origin is list:
        (item,) = typing.get_args(base) or (Any,)
        text = "a list of numbers" if item in (int, float) else "a list"
    elif origin is dict or dataclasses.is_dataclass(base):
        text = "a mapping"
    else:
        text = "a value of another type"
    return f"{text} or null" if optional else text


def _strip_optional(typ: Any) -> Any:
    args = typing.get_args(typ)
    if args and type(None) in args and typing.get_origin(typ) in (typing.Union, _UNION_TYPE):
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typ
    return typ


_UNION_TYPE = type(int | None)


# ---- ranges -----------------------------------------------------------------------------------------

MAX_SEED = 2**32 - 1  # numpy's bound: Lightning's seed_everything raises a bare ValueError outside [0, MAX_SEED]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Keys of `optimizer` that only some optimizers read.
OPTIMIZER_EXTRAS = {
    "adam": ("betas",),
    "adamw": ("betas",),
    "sgd": ("momentum", "nesterov"),
    "lars": ("momentum", "trust_coefficient"),
}
EXTRA_EXAMPLES = {"betas": "[0.9,0.999]", "momentum": "0.9", "nesterov": "false", "trust_coefficient": "0.001"}


def show(value: Any) -> str:
    """A value as it would be typed in an override: 0.0 -> 0, True -> true, None -> null, 'x' -> 'x'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _read(cfg: DictConfig, key: str) -> Any:
    """The resolved value at a dotted key; an unreadable one (missing, broken interpolation) is a ConfigError."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True, throw_on_resolution_failure=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key} cannot be read ({first_line(e)}); set it in conf/ or on the command line") from None
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(key: str, value: Any, must: str, fix: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={show(value)} must be {must}; {fix}")


def integer(cfg: DictConfig, key: str, lo: int, fix: str, *, hi: int | None = None, also: tuple = ()) -> Any:
    """An integer in [lo, hi] (hi None: no bound), or one of `also` (e.g. -1: no limit)."""
    v = _read(cfg, key)
    if _is_int(v) and v in also:
        return v
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        must = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        if also:
            must += " or " + " or ".join(show(a) for a in also)
        _fail(key, v, must, fix)
    return v


def number(
    cfg: DictConfig,
    key: str,
    fix: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    open_lo: bool = False,
    open_hi: bool = False,
) -> float:
    """A finite number in the interval [lo, hi], each end open or closed."""
    v = _read(cfg, key)
    ok = _is_number(v) and (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
    if not ok:
        _fail(key, v, _interval(lo, hi, open_lo, open_hi), fix)
    return float(v)


def probability(cfg: DictConfig, key: str, fix: str) -> float:
    return number(cfg, key, f"it is a probability; {fix}", lo=0.0, hi=1.0)


def pair(cfg: DictConfig, key: str, fix: str, *, lo: float, hi: float = math.inf, open_lo: bool = True) -> list:
    """[min, max]: two finite numbers with lo < (or <=) min <= max <= hi."""
    v = _read(cfg, key)
    ok = isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
    if ok:
        a, b = v
        ok = (a > lo if open_lo else a >= lo) and a <= b <= hi
    if not ok:
        left = f"{show(lo)} {'<' if open_lo else '<='} min <= max"
        _fail(key, v, f"[min, max] with {left}" + (f" <= {show(hi)}" if hi != math.inf else ""), fix)
    return v


def choice(cfg: DictConfig, key: str, choices: typing.Iterable[str], fix: str = "") -> str:
    v = _read(cfg, key)
    if v not in tuple(choices):
        raise ConfigError(f"{key}={v!r} is not known; choose one of {list(choices)}" + (f" ({fix})" if fix else ""))
    return v


def _interval(lo: float, hi: float, open_lo: bool, open_hi: bool) -> str:
    if hi == math.inf:
        return f"{'>' if open_lo else '>='} {show(lo)}"
    if lo == -math.inf:
        return f"{'<' if open_hi else '<='} {show(hi)}"
    return f"in {'(' if open_lo else '['}{show(lo)}, {show(hi)}{')' if open_hi else ']'}"


def validate(cfg: DictConfig) -> None:
    """Refuses the first value of a composed config outside its range, with one line (ConfigError).

    Works on both configs (pretraining: it has `loss`; probe: it has `ckpt`). Checks names, numeric
    ranges and the values that only make sense together; what depends on the data (data.val_size below
    the number of training images, a batch no larger than the split) is checked when the data is loaded.
    """
    pretraining = "loss" in cfg
    _check_keys(cfg, TrainSSLConfig if pretraining else TrainLinearConfig, "")
    integer(cfg, "seed", 0, "the run's seed, e.g. seed=0", hi=MAX_SEED)
    _check_data(cfg)
    _check_probe(cfg, pretraining)
    _check_trainer(cfg)
    if cfg.get("model") is not None:
        _check_model(cfg, pretraining)
    if pretraining:
        _check_augmentation(cfg)
        _check_optimizer(cfg)
        _check_pretraining_sections(cfg)
        from simclr.runs import derive_run_values  # devices x nodes, and a global batch they divide

        derived = derive_run_values(cfg)
        if cfg.probe.enabled and derived.world_size > 1:
            raise ConfigError(
                "probe.enabled=true probes on one device, but this run uses "
                f"{derived.world_size} processes; probe afterwards with train_linear.py "
                "ckpt=<run>/checkpoints/last.ckpt"
            )


def _check_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """Refuses keys no schema has: Hydra's `+key=value` adds them past the schema, and nothing reads them."""
    names = [f.name for f in dataclasses.fields(schema)]
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        if key not in names and not (key == "hydra" and not prefix):
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"its keys are {names}"
            where = prefix[:-1] or "the config"
            raise ConfigError(f"{prefix}{key} is not a key of {where}, and nothing reads it; {hint}")
    for name in names:
        sub = _strip_optional(hints[name])
        if dataclasses.is_dataclass(sub) and isinstance(node.get(name), DictConfig):
            _check_keys(node[name], sub, f"{prefix}{name}.")


def _check_data(cfg: DictConfig) -> None:
    integer(cfg, "data.batch_size", 1, "it is the global batch (images per step over all devices), e.g. 512")
    integer(cfg, "data.eval_batch_size", 1, "images per evaluation batch on one device, e.g. 1024")
    integer(cfg, "data.val_size", 0, "training images held out for validation, e.g. 5000 (0: none)")
    integer(cfg, "data.num_workers", 0, "0 (batches are slices of in-memory tensors) or a number of processes")


def _check_model(cfg: DictConfig, pretraining: bool) -> None:
    from simclr.nets import ARCHITECTURES, OUTPUT_NORMS

    choice(cfg, "model.arch", sorted(ARCHITECTURES))
    integer(cfg, "model.width", 1, "channels of the first stage, e.g. model.width=64 (torchvision's)")
    integer(cfg, "model.head.hidden_dim", 1, "e.g. model.head.hidden_dim=2048")
    integer(cfg, "model.head.out_dim", 1, "e.g. model.head.out_dim=128")
    integer(cfg, "model.head.num_layers", 1, "1: a linear head, 2: SimCLR's MLP")
    choice(cfg, "model.head.output_norm", list(OUTPUT_NORMS))
    mode = choice(cfg, "model.compile_mode", COMPILE_MODES)
    compiled = _read(cfg, "model.compile")
    if not pretraining and compiled:
        _fail("model.compile", True, "false in train_linear.py", "the probe runs the encoder uncompiled")
    if mode != "default" and not compiled:
        raise ConfigError(
            f"model.compile_mode={mode!r} has no effect without compilation; add model.compile=true"
            + ("" if pretraining else " (train_ssl.py only)")
        )


BACKENDS = ("device", "torchvision")


def _check_augmentation(cfg: DictConfig) -> None:
    a = "augmentation"
    choice(cfg, f"{a}.backend", BACKENDS, "device: batched on the training device; torchvision: per image")
    integer(cfg, f"{a}.num_workers", 0, "CPU processes making views with augmentation.backend=torchvision, e.g. 2")
    pair(cfg, f"{a}.crop_scale", "fractions of the image area, e.g. [0.08,1.0] (SimCLR)", lo=0.0, hi=1.0)
    pair(cfg, f"{a}.crop_ratio", "aspect ratios of the crop, e.g. [0.75,1.3333333333333333]", lo=0.0)
    for p in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
        probability(cfg, f"{a}.{p}", f"e.g. {a}.{p}=0.5")
    for name in ("brightness", "contrast", "saturation"):
        number(cfg, f"{a}.{name}", f"the factor is drawn from [1 - {name}, 1 + {name}], e.g. 0.4", lo=0.0)
    number(cfg, f"{a}.hue", "a shift in turns of the hue circle, at most half a turn, e.g. 0.1", lo=0.0, hi=0.5)
    pair(cfg, f"{a}.blur_sigma", "the blur's standard deviation in pixels, e.g. [0.1,2.0]", lo=0.0)
    size = integer(cfg, f"{a}.blur_kernel_size", 1, "an odd number of pixels, e.g. 3")
    if size % 2 == 0:
        _fail(f"{a}.blur_kernel_size", size, "odd", f"e.g. {a}.blur_kernel_size={size + 1}")


def _check_optimizer(cfg: DictConfig) -> None:
    from simclr.optim import LR_SCALINGS, OPTIMIZERS

    name = choice(cfg, "optimizer.name", OPTIMIZERS, "select an optimizer with its group: optimizer=adam|sgd|lars")
    number(
        cfg,
        "optimizer.lr",
        "the rate at optimizer.base_batch_size images per step, e.g. 0.001 (adam) or 0.06 (sgd)",
        lo=0.0,
        open_lo=True,
    )
    integer(cfg, "optimizer.base_batch_size", 1, "the batch at which optimizer.lr applies, e.g. 256")
    choice(cfg, "optimizer.lr_scaling", LR_SCALINGS)
    number(cfg, "optimizer.weight_decay", "0 disables it, e.g. 1e-6", lo=0.0)
    used = OPTIMIZER_EXTRAS[name]
    for key in ("betas", "momentum", "nesterov", "trust_coefficient"):
        value = _read(cfg, f"optimizer.{key}")
        if key in used and value is None:
            raise ConfigError(
                f"optimizer.{key} is not set, and optimizer.name={name} needs it; select the optimizer with its "
                f"group (optimizer={name}), which sets it, or add optimizer.{key}={EXTRA_EXAMPLES[key]}"
            )
        if key not in used and value is not None:
            _fail(
                f"optimizer.{key}",
                value,
                f"null with optimizer.name={name}, which does not use it",
                f"select the optimizer with its group (optimizer={name}), not optimizer.name={name}",
            )
    if "betas" in used:
        betas = _read(cfg, "optimizer.betas")
        if not (isinstance(betas, list) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)):
            _fail("optimizer.betas", betas, "two numbers in [0, 1)", "Adam's moment decays, e.g. [0.9,0.999]")
    if "momentum" in used:
        momentum = number(cfg, "optimizer.momentum", "e.g. optimizer.momentum=0.9", lo=0.0, hi=1.0, open_hi=True)
        if name == "sgd" and _read(cfg, "optimizer.nesterov") and momentum == 0:
            _fail("optimizer.momentum", momentum, "> 0 with optimizer.nesterov=true", "Nesterov needs momentum")
    if "trust_coefficient" in used:
        number(cfg, "optimizer.trust_coefficient", "LARS's eta, e.g. 0.001", lo=0.0, open_lo=True)


def _check_pretraining_sections(cfg: DictConfig) -> None:
    number(cfg, "loss.temperature", "SimCLR uses 0.1-1.0; 0.5 for CIFAR-10", lo=0.0, open_lo=True)
    number(cfg, "scheduler.warmup_epochs", "epochs of linear warm-up, e.g. 10 (0: none)", lo=0.0)
    number(cfg, "scheduler.final_lr_fraction", "the cosine ends at lr x this, e.g. 0", lo=0.0, hi=1.0)
    integer(cfg, "knn.k", 1, "neighbours that vote, e.g. knn.k=200")
    number(cfg, "knn.temperature", "the votes are exp(similarity / temperature), e.g. 0.1", lo=0.0, open_lo=True)
    integer(cfg, "divergence.check_every_n_steps", 1, "steps between reads of the divergence flag, e.g. 20")
    integer(
        cfg,
        "checkpoint.every_n_epochs",
        1,
        "epochs between checkpoints, e.g. 50 (0 would write none, not even last.ckpt)",
    )
    integer(cfg, "checkpoint.keep", -1, "periodic checkpoints kept, newest first (-1: all)")


def _check_probe(cfg: DictConfig, pretraining: bool) -> None:
    from simclr.probe import MODES, OPTIMIZERS

    if not pretraining and _read(cfg, "probe.enabled"):
        _fail("probe.enabled", True, "false in train_linear.py", "it asks train_ssl.py to probe after pretraining")
    protocol = _read(cfg, "probe.protocol")
    if not isinstance(protocol, str) or not protocol.strip():
        _fail("probe.protocol", protocol, "a name", "it is recorded in results.json, e.g. probe.protocol=cached_adam")
    integer(cfg, "probe.epochs", 1, "e.g. probe.epochs=100")
    choice(cfg, "probe.mode", MODES)
    choice(cfg, "probe.optimizer", OPTIMIZERS)
    number(cfg, "probe.lr", "e.g. probe.lr=0.001 (adam) or 0.1 (sgd)", lo=0.0, open_lo=True)
    number(cfg, "probe.momentum", "e.g. probe.momentum=0.9", lo=0.0, hi=1.0, open_hi=True)
    number(cfg, "probe.weight_decay", "0 disables it", lo=0.0)
    integer(cfg, "probe.batch_size", 1, "images per probe step, e.g. 512")
    pair(cfg, "probe.crop_scale", "fractions of the image area, e.g. [0.08,1.0]", lo=0.0, hi=1.0)


def _check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    steps = _read(cfg, "trainer.max_steps") if "max_steps" in trainer else -1
    if steps != -1:
        integer(cfg, "trainer.max_steps", 1, "optimizer steps in the run (-1: max_epochs decides)", also=(-1,))
    epochs = _read(cfg, "trainer.max_epochs") if "max_epochs" in trainer else None
    if not (steps != -1 and epochs in (-1, None)):
        integer(cfg, "trainer.max_epochs", 1, "the run needs an end: e.g. 100, or -1 with trainer.max_steps set")
    for key, fix in [
        ("check_val_every_n_epoch", "epochs between validation passes (the kNN monitor), e.g. 10"),
        ("log_every_n_steps", "steps between logged values, e.g. 20"),
    ]:
        if key in trainer:
            integer(cfg, f"trainer.{key}", 1, fix)
    if "num_sanity_val_steps" in trainer:
        integer(cfg, "trainer.num_sanity_val_steps", 0, "0 skips the sanity check", also=(-1,))
    if trainer.get("limit_train_batches") is not None:
        limit = _read(cfg, "trainer.limit_train_batches")
        if not (_is_int(limit) and limit >= 1) and not (isinstance(limit, float) and 0 < limit <= 1):
            _fail(
                "trainer.limit_train_batches",
                limit,
                "an integer >= 1 (batches) or a fraction in (0, 1], or null (every batch)",
                "e.g. 10 for a smoke test",
            )
