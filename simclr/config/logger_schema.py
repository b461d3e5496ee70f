"""The `logger` group's schema: the arguments of the class its `_target_` names, read from that class's
signature, and of the function its `**kwargs` go to (wandb.init for WandbLogger, SummaryWriter for
TensorBoardLogger). A misspelt key or a value of the wrong type (`logger.offline=yes`) is refused before the
run starts, instead of reaching W&B or TensorBoard, which read it their own way.

`simclr.config.rules.check` applies it. In the composed config the group stays an open mapping: each logger
class has its own arguments, and reading wandb.init's means importing wandb (a second), which a launch that
logs to CSV should not pay.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from simclr.config.keys import suggest
from simclr.config.signature_schema import describe_type, signature_dataclass
from simclr.errors import ConfigError, first_line


def _kwargs_receiver(cls: type) -> tuple[str, Callable[..., Any] | None]:
    """(its name, the callable) that a Lightning logger passes its **kwargs to; ('', None) for none."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    if issubclass(cls, WandbLogger):
        return "wandb.init", importlib.import_module("wandb").init
    if issubclass(cls, TensorBoardLogger):
        return "SummaryWriter", importlib.import_module("torch.utils.tensorboard").SummaryWriter.__init__
    return "", None


def logger_schema(cls: type) -> tuple[type, str]:
    """(a dataclass of every argument `cls(...)` accepts, the names of what defines them)."""
    own = signature_dataclass(f"{cls.__name__}Config", cls.__init__)
    receiver_name, receiver = _kwargs_receiver(cls)
    if receiver is None:
        return own, cls.__name__
    names = {f.name for f in dataclasses.fields(own)}
    passed = [f for f in dataclasses.fields(signature_dataclass("Kwargs", receiver)) if f.name not in names]
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in passed]
    return dataclasses.make_dataclass(own.__name__, fields, bases=(own,)), f"{cls.__name__} or {receiver_name}"


def typed_logger(logger: DictConfig, resolve: bool = True) -> dict[str, Any]:
    """The `logger` group as `hydra.utils.instantiate` takes it, each value given converted to the type its
    argument declares (`offline: "no"` -> False; the string would be true); only the keys given, so
    what the class computes from its defaults stays its own. Refuses (ConfigError) a class that cannot be
    imported, a key it does not take, a value of the wrong type. `resolve=False` (the rules, before the job
    exists) leaves interpolations such as `${paths.output_dir}` unchecked."""
    given = OmegaConf.to_container(logger, resolve=resolve)
    target = given.pop("_target_", None)
    if not isinstance(target, str):
        raise ConfigError("logger._target_ is not set; choose a logger, e.g. logger=csv (conf/logger/)")
    schema, owners = logger_schema(_import_class(target))
    try:
        typed = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schema), given), resolve=resolve)
    except ConfigKeyError as e:
        names = [f.name for f in dataclasses.fields(schema)]
        raise ConfigError(
            f"logger.{e.key} is not an argument of {owners}; {suggest(str(e.key), names, 'logger.')}"
        ) from None
    except ValidationError as e:
        hint = {f.name: f.type for f in dataclasses.fields(schema)}.get(str(e.key))
        raise ConfigError(
            f"logger.{e.key}={given.get(str(e.key))} must be {describe_type(hint)} ({owners}: {first_line(e)})"
        ) from None
    return {"_target_": target, **{key: typed[key] for key in given}}


def _import_class(target: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"logger._target_={target} cannot be imported ({type(e).__name__}: {e}); choose a logger, e.g. logger=csv"
        ) from None
    if not isinstance(cls, type):
        raise ConfigError(f"logger._target_={target} is not a class; choose a logger, e.g. logger=csv (conf/logger/)")
    return cls
