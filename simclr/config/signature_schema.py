"""Schemas read from a callable's signature: the `trainer` group is Lightning's Trainer arguments.

A hand-written dataclass of the Trainer's fifty-odd arguments would fall behind the installed Lightning; this
one is made from `pytorch_lightning.Trainer.__init__` when the package is imported, so every argument of the
installed version is a key, typed where OmegaConf can type it (bool, int, float, str, each optionally None) and
`Any` where the argument takes objects or unions (accelerator, strategy, precision, devices, callbacks, ...).
A default equals the Trainer's own, so a key no config sets passes the Trainer what it would assume anyway.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Union

SIMPLE = (bool, int, float, str)


def omegaconf_type(hint: Any) -> Any:
    """The type OmegaConf can check for a type hint: bool/int/float/str or Optional of one, else Any."""
    if hint in SIMPLE:
        return hint
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in SIMPLE:
            return rest[0] | None
    return Any


def signature_dataclass(name: str, function: Callable[..., Any], exclude: Iterable[str] = ()) -> type:
    """A dataclass with a field for each keyword argument of `function` (but `exclude`), typed and defaulted
    as the signature says (objects as defaults become None, typed Any)."""
    parameters = inspect.signature(function).parameters.values()
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):  # one hint names a type not importable here: keep the others as written
        hints = {p.name: p.annotation for p in parameters if not isinstance(p.annotation, str)}
    fields = []
    for p in parameters:
        if p.name == "self" or p.name in exclude or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        typ = omegaconf_type(hints.get(p.name, Any))
        default = None if p.default is inspect.Parameter.empty else p.default
        if not isinstance(default, (*SIMPLE, type(None))):
            typ, default = Any, None
        if default is None and typ is not Any and type(None) not in typing.get_args(typ):
            typ = typ | None
        fields.append((p.name, typ, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields)


def trainer_schema() -> type:
    """Lightning's Trainer arguments; `logger` and `default_root_dir` are not among them: the entry points
    pass those from the `logger` group and `paths.output_dir`."""
    import pytorch_lightning as pl

    return signature_dataclass("TrainerConfig", pl.Trainer.__init__, exclude=("logger", "default_root_dir"))


def describe_type(typ: Any) -> str:
    """'an integer', 'a number', 'true or false', 'a string', 'a list of numbers', with 'or null'."""
    base = without_none(typ)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list of numbers"}
    text = names.get(typing.get_origin(base) or base) or ("a mapping" if dataclasses.is_dataclass(base) else "")
    return f"{text} or null" if base is not typ else text


def without_none(hint: Any) -> Any:
    """X for `X | None` (or Optional[X]); the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else hint
