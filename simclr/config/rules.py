"""The rules of the configs that their types (simclr/config/schema.py) cannot express: numeric ranges (RANGES),
[min, max] pairs (PAIRS), and values that only make sense together. `check(cfg)` runs once per job
(simclr/jobs/cli.py) and raises ConfigError with one line, `<key>=<value> must be <range>; <fix>`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from simclr.config.keys import check_interpolations, check_keys
from simclr.config.logger_schema import typed_logger
from simclr.config.schema import OPTIMIZERS
from simclr.errors import ConfigError, first_line

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
MAX_SEED = 2**32 - 1  # numpy's bound: Lightning's seed_everything raises a bare ValueError outside it


class Range(NamedTuple):
    """lo < x (or <=) ... < hi (or <=); `integer` also requires an int; `also` admits special values."""

    lo: float = -math.inf
    hi: float = math.inf
    fix: str = ""
    integer: bool = False
    open_lo: bool = False
    open_hi: bool = False
    also: tuple = ()


def _int(lo: int, fix: str, hi: float = math.inf, also: tuple = ()) -> Range:
    return Range(lo, hi, fix, integer=True, also=also)


def _pos(fix: str) -> Range:
    return Range(0.0, fix=fix, open_lo=True)


def _prob(fix: str) -> Range:
    return Range(0.0, 1.0, f"it is a probability; {fix}")


_A = "augmentation"
RANGES: dict[str, Range] = {
    "seed": _int(0, "the run's seed, e.g. seed=0", hi=MAX_SEED),
    "data.batch_size": _int(1, "it is the global batch (images per step over all devices), e.g. 512"),
    "data.eval_batch_size": _int(
        1, "images per evaluation batch on one device, e.g. 1024 (null: 128 on the CPU, 1024 on a GPU)", also=(None,)
    ),
    "data.val_size": _int(0, "training images held out for validation, e.g. 5000 (0: none)"),
    "data.num_workers": _int(0, "0 (batches are slices of in-memory tensors) or a number of processes"),
    "model.width": _int(1, "channels of the first stage, e.g. model.width=64 (torchvision's)"),
    "model.head.hidden_dim": _int(1, "e.g. model.head.hidden_dim=2048"),
    "model.head.out_dim": _int(1, "e.g. model.head.out_dim=128"),
    "model.head.num_layers": _int(1, "1: a linear head, 2: SimCLR's MLP"),
    f"{_A}.num_workers": _int(0, "CPU processes making views with augmentation.backend=torchvision, e.g. 2"),
    **{f"{_A}.{p}": _prob(f"e.g. {_A}.{p}=0.5") for p in ("flip_p", "jitter_p", "grayscale_p", "blur_p")},
    **{
        f"{_A}.{n}": Range(0.0, fix=f"the factor is drawn from [1 - {n}, 1 + {n}], e.g. 0.4")
        for n in ("brightness", "contrast", "saturation")
    },
    f"{_A}.hue": Range(0.0, 0.5, "a shift in turns of the hue circle, at most half a turn, e.g. 0.1"),
    f"{_A}.blur_kernel_size": _int(1, "an odd number of pixels, e.g. 3"),
    f"{_A}.size": _int(1, "the views' side in pixels, e.g. 24 (null: the image's)", also=(None,)),
    "optimizer.lr": _pos("the rate at optimizer.base_batch_size images per step, e.g. 0.001 (adam) or 0.06 (sgd)"),
    "optimizer.base_batch_size": _int(1, "the batch at which optimizer.lr applies, e.g. 256"),
    "optimizer.weight_decay": Range(0.0, fix="0 disables it, e.g. 1e-6"),
    "optimizer.momentum": Range(0.0, 1.0, "e.g. optimizer.momentum=0.9", open_hi=True),
    "optimizer.trust_coefficient": _pos("LARS's eta, e.g. 0.001"),
    "loss.temperature": _pos("SimCLR uses 0.1-1.0; 0.5 for CIFAR-10"),
    "scheduler.warmup_epochs": Range(0.0, fix="epochs of linear warm-up, e.g. 10 (0: none)"),
    "scheduler.final_lr_fraction": Range(0.0, 1.0, "the cosine ends at lr x this, e.g. 0"),
    "knn.k": _int(1, "neighbours that vote, e.g. knn.k=200"),
    "knn.temperature": _pos("the votes are exp(similarity / temperature), e.g. 0.1"),
    "checkpoint.every_n_epochs": _int(1, "epochs between checkpoints, e.g. 50 (0 would write none, not even last)"),
    "checkpoint.keep": _int(-1, "periodic checkpoints kept, newest first (-1: all)"),
    "probe.epochs": _int(1, "e.g. probe.epochs=100"),
    "probe.lr": _pos("e.g. probe.lr=0.001 (adam) or 0.1 (sgd)"),
    "probe.momentum": Range(0.0, 1.0, "e.g. probe.momentum=0.9", open_hi=True),
    "probe.weight_decay": Range(0.0, fix="0 disables it"),
    "probe.batch_size": _int(1, "images per probe step, e.g. 512"),
    # Lightning's own arguments this project relies on; the rest (precision, strategy, ...) are Lightning's.
    "trainer.max_steps": _int(1, "optimizer steps in the run (-1: max_epochs decides)", also=(-1,)),
    "trainer.check_val_every_n_epoch": _int(1, "epochs between validation passes (the kNN monitor), e.g. 10"),
    "trainer.log_every_n_steps": _int(1, "steps between logged values, e.g. 20"),
    "trainer.num_sanity_val_steps": _int(0, "0 skips the sanity check", also=(-1,)),
    "divergence.check_every_n_steps": _int(1, "steps between reads of the divergence flag, e.g. 20"),
}
# [min, max] pairs: lo < min <= max <= hi
PAIRS: dict[str, tuple[float, float, str]] = {
    f"{_A}.crop_scale": (0.0, 1.0, "fractions of the image area, e.g. [0.08,1.0] (SimCLR)"),
    f"{_A}.crop_ratio": (0.0, math.inf, "aspect ratios of the crop, e.g. [0.75,1.3333333333333333]"),
    f"{_A}.blur_sigma": (0.0, math.inf, "the blur's standard deviation in pixels, e.g. [0.1,2.0]"),
    "probe.crop_scale": (0.0, 1.0, "fractions of the image area, e.g. [0.08,1.0]"),
}


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
        return repr(str(value))
    return str(value)


def _fail(key: str, value: Any, must: str, fix: str) -> ConfigError:
    return ConfigError(f"{key}={show(value)} must be {must}; {fix}")


def _read(cfg: DictConfig, key: str) -> Any:
    """The resolved value at a dotted key (a missing key: None); an unreadable one is a ConfigError."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True, throw_on_resolution_failure=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key} cannot be read ({first_line(e)}); set it in conf/ or on the command line") from None
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _bounds(r: Range) -> str:
    if r.integer:
        text = f"an integer >= {show(r.lo)}" if r.hi == math.inf else f"an integer in [{show(r.lo)}, {show(r.hi)}]"
        return text + "".join(f" or {show(a)}" for a in r.also)
    if r.hi == math.inf:
        return f"{'>' if r.open_lo else '>='} {show(r.lo)}"
    return f"in {'(' if r.open_lo else '['}{show(r.lo)}, {show(r.hi)}{')' if r.open_hi else ']'}"


def _in_range(v: Any, r: Range) -> bool:
    if v is None:
        return None in r.also
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (r.integer and not isinstance(v, int)):
        return False
    if v in r.also:
        return True
    return math.isfinite(v) and (v > r.lo if r.open_lo else v >= r.lo) and (v < r.hi if r.open_hi else v <= r.hi)


def _present(cfg: DictConfig, key: str) -> bool:
    """Whether the config has the key: the probe has no `loss`, and Trainer keys are given or not."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and name in node.keys()


def _check_ranges(cfg: DictConfig) -> None:
    for key, r in RANGES.items():
        if _present(cfg, key) and not _in_range(v := _read(cfg, key), r):
            raise _fail(key, v, _bounds(r), r.fix)
    for key, (lo, hi, fix) in PAIRS.items():
        if not _present(cfg, key):
            continue
        v = _read(cfg, key)
        if not (len(v) == 2 and lo < v[0] <= v[1] <= hi):
            upper = f" <= {show(hi)}" if hi != math.inf else ""
            raise _fail(key, v, f"[min, max] with {show(lo)} < min <= max{upper}", fix)


def check(cfg: DictConfig) -> None:
    """Refuses the first value of a composed config that breaks a rule, with one line (ConfigError).

    Works on both configs (pretraining has `loss`). What depends on the data (data.val_size below the
    number of training images, a batch no larger than the split) is checked when the data is loaded.
    """
    pretraining = "loss" in cfg
    check_keys(cfg)
    check_interpolations(cfg)
    if cfg.get("logger"):
        typed_logger(cfg.logger, resolve=False)  # its keys and types, from the logger class's signature
    _check_ranges(cfg)
    _check_trainer(cfg)
    if _read(cfg, "model") is not None:
        _check_model(cfg, pretraining)
    if pretraining:
        _check_pretraining(cfg)
    else:
        if cfg.probe.enabled:
            raise _fail(
                "probe.enabled", True, "false in train_linear.py", "it asks train_ssl.py to probe after pretraining"
            )
    if not str(cfg.probe.protocol).strip():
        raise _fail("probe.protocol", cfg.probe.protocol, "a name", "it is recorded in results.json, e.g. cached_adam")


def _check_model(cfg: DictConfig, pretraining: bool) -> None:
    mode, compiled = _read(cfg, "model.compile_mode"), _read(cfg, "model.compile")
    if mode not in COMPILE_MODES:
        raise ConfigError(f"model.compile_mode={mode!r} is not known; choose one of {list(COMPILE_MODES)}")
    if not pretraining and compiled:
        raise _fail("model.compile", True, "false in train_linear.py", "the probe runs the encoder uncompiled")
    if mode != "default" and not compiled:
        raise ConfigError(
            f"model.compile_mode={mode!r} has no effect without compilation; add model.compile=true"
            + ("" if pretraining else " (train_ssl.py only)")
        )


def _check_pretraining(cfg: DictConfig) -> None:
    size = _read(cfg, "augmentation.blur_kernel_size")
    if size % 2 == 0:
        raise _fail("augmentation.blur_kernel_size", size, "odd", f"e.g. augmentation.blur_kernel_size={size + 1}")
    name, schema = _read(cfg, "optimizer.name"), OmegaConf.get_type(cfg.optimizer)
    if OPTIMIZERS.get(name) is not schema:
        group = next((n for n, s in OPTIMIZERS.items() if s is schema), None)
        raise ConfigError(
            f"optimizer.name={name} does not match the optimizer group's keys (optimizer={group}); "
            f"select the optimizer with its group: optimizer={name if name in OPTIMIZERS else '|'.join(OPTIMIZERS)}"
        )
    if _present(cfg, "optimizer.betas"):
        betas = _read(cfg, "optimizer.betas")
        if not (len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise _fail("optimizer.betas", betas, "two numbers in [0, 1)", "Adam's moment decays, e.g. [0.9,0.999]")
    if name == "sgd" and cfg.optimizer.nesterov and cfg.optimizer.momentum == 0:
        raise _fail("optimizer.momentum", 0, "> 0 with optimizer.nesterov=true", "Nesterov needs momentum")
    from simclr.config.derived import derive_run_values  # devices x nodes, and a global batch they divide

    if (world := derive_run_values(cfg).world_size) > 1 and cfg.probe.enabled:
        raise ConfigError(
            f"probe.enabled=true probes on one device, but this run uses {world} processes; probe afterwards "
            "with train_linear.py ckpt=<run>/checkpoints/last.ckpt"
        )


def _check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.get("trainer") or {}
    steps = _read(cfg, "trainer.max_steps") if "max_steps" in trainer else -1
    epochs = _read(cfg, "trainer.max_epochs") if "max_epochs" in trainer else None
    if not (steps != -1 and epochs in (-1, None)) and not _in_range(epochs, _int(1, "")):
        raise _fail(
            "trainer.max_epochs",
            epochs,
            "an integer >= 1",
            "the run needs an end: e.g. 100, or -1 with trainer.max_steps set",
        )
    limit = _read(cfg, "trainer.limit_train_batches") if "limit_train_batches" in trainer else None
    if limit is not None and not (_in_range(limit, _int(1, "")) or isinstance(limit, float) and 0 < limit <= 1):
        raise _fail(
            "trainer.limit_train_batches",
            limit,
            "an integer >= 1 (batches) or a fraction in (0, 1], or null (every batch)",
            "e.g. 10 for a smoke test",
        )
