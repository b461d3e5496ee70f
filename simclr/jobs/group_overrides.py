"""Command lines that Hydra and OmegaConf would answer with a traceback, refused first with one line.

Some overrides reach code paths that raise exception types nobody can tell from a bug (Hydra 1.3, OmegaConf
2.3): a group given something that is not an option's name (`group=null`, `group=1`, `~group=1`,
`group=${x}`: ValueErrors while Hydra builds the defaults list), a key of a group that the command does not
select or deletes (`train_linear.py model.width=8`, whose `model` defaults to null, or `~logger
logger.name=x`: an AssertionError inside OmegaConf.update), and a key below a list (`augmentation.crop_ratio.x=1`:
a ValueError there). They are read here from the command line, with Hydra's own override parser, from the
primary config's defaults list and the experiment presets it names, and from the primary schema.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from simclr.config.signature_schema import without_none
from simclr.errors import ConfigError


def groups(conf: Path) -> dict[str, list[str]]:
    """{group: its options} of a config directory (one level: conf/<group>/<option>.yaml)."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(conf.iterdir()) if d.is_dir()}


def default_choices(conf: Path, config_name: str) -> dict[str, str | None]:
    """{group: its default option, None for `group: null`} from the primary config's defaults list."""
    choices: dict[str, str | None] = {}
    for entry in OmegaConf.load(conf / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, str) or len(entry) != 1:
            continue
        key, value = next(iter(entry.items()))
        group = str(key).removeprefix("optional ").strip()
        if not group.startswith("override ") and "/" not in group:
            choices[group] = value
    return choices


def _preset_selects(conf: Path, group: str, option: str) -> set[str]:
    """The groups a preset (e.g. experiment=quickstart) selects with `override /<group>: <option>`."""
    path = conf / group / f"{option}.yaml"
    if not path.is_file():
        return set()
    selected = set()
    for entry in OmegaConf.load(path).get("defaults", []) or []:
        if not isinstance(entry, str) and len(entry) == 1:
            key, value = next(iter(entry.items()))
            if str(key).startswith("override /") and value is not None:
                selected.add(str(key).removeprefix("override /"))
    return selected


# Hydra's flags that take a value (`--cfg job`, `-cd DIR`, ...); `--info` takes one optionally.
VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c", "--package", "-p"}
OTHER_CONFIG = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}


def split_command_line(args: list[str]) -> tuple[list[str], set[str]]:
    """(the overrides, the flags) of a script's arguments."""
    overrides, flags, skip = [], set(), False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg.startswith("-"):
            flag = arg.split("=")[0]
            flags.add(flag)
            following = args[i + 1] if i + 1 < len(args) else "="
            skip = "=" not in arg and (flag in VALUE_FLAGS or flag in ("--info", "-i") and "=" not in following)
        else:
            overrides.append(arg)
    return overrides, flags


def check_group_overrides(args: list[str], conf: Path, config_name: str, schema: type | None = None) -> None:
    """Refuses (ConfigError) a group given anything but an option's name, a key of a group this command line
    leaves unselected or deletes (when the command composes conf/<config_name>.yaml: not with another config
    name or directory), and a key below a list or a value of `schema` (the primary config's dataclass)."""
    overrides, flags = split_command_line(args)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return  # Hydra reports a malformed override itself, in one line (simclr.jobs.cli.describe)
    if flags & OTHER_CONFIG:
        parsed = [o for o in parsed if "." not in o.key_or_group]  # the group checks only
    options = groups(conf)
    selected = {g for g, choice in default_choices(conf, config_name).items() if choice is not None}
    deleted = set()
    for o in (o for o in parsed if o.key_or_group in options):
        if o.is_delete():
            _refuse_named_deletion(o, options[o.key_or_group])
            deleted.add(o.key_or_group)
            continue
        _refuse_non_names(o, options[o.key_or_group])
        selected.add(o.key_or_group)
        for option in _values(o, options[o.key_or_group]):
            selected |= _preset_selects(conf, o.key_or_group, option)
    for o in parsed:
        group = o.key_or_group.split(".")[0]
        if "." in o.key_or_group and group in options and (group not in selected or group in deleted):
            why = f"~{group} deletes it" if group in deleted else f"{config_name}.py's {group} is null"
            raise ConfigError(
                f"{o.input_line} sets a key of {group}, which this command does not select ({why}); choose one "
                f"instead, e.g. {group}={options[group][0]} (one of {options[group]})"
            )
    for o in parsed:
        if schema is not None and "." in o.key_or_group and not o.is_delete():
            _refuse_key_below_a_value(o, schema)


def _refuse_key_below_a_value(o: Override, schema: type) -> None:
    """`augmentation.crop_ratio.x=1` (a key below a list) and `trainer.max_epochs.x=1` (below a number), read
    from the types of `schema`; an open mapping (logger) or a key the schema lacks is Hydra's to judge."""
    parts, hint = o.key_or_group.split("."), schema
    for depth, part in enumerate(parts):
        here, kind = ".".join(parts[:depth]), _kind(hint)
        if kind == "section":
            hint = _field_type(without_none(hint), part)
            if hint is None:
                return
        elif kind == "list":
            if not part.isdigit():
                raise ConfigError(
                    f"{o.input_line}: {here} is a list, whose items are numbered from 0; set it whole, e.g. "
                    f"{here}=[...], or one item, e.g. {here}.0=..."
                )
            hint = typing.get_args(without_none(hint))[0]
        elif kind == "value":
            raise ConfigError(f"{o.input_line}: {here} is a single value, with no keys below it; set it as {here}=...")
        else:
            return


def _field_type(section: type, name: str) -> Any:
    """The type of field `name` of a dataclass or of the first subclass that has it (optimizer: the base schema
    holds what every optimizer reads, AdamConfig adds betas); None where none has it."""
    hints = typing.get_type_hints(section)
    if name in hints:
        return hints[name]
    for subclass in section.__subclasses__():
        if (found := _field_type(subclass, name)) is not None:
            return found
    return None


def _kind(hint: Any) -> str:
    """'section' (a dataclass), 'list', 'value' (a number, string, boolean or choice) or 'open' (anything)."""
    hint = without_none(hint)
    if dataclasses.is_dataclass(hint):
        return "section"
    if typing.get_origin(hint) is list:
        return "list"
    if isinstance(hint, type) and issubclass(hint, (int, float, str, bool, Enum)):
        return "value"
    return "open"


def _refuse_non_names(o: Override, options: list[str]) -> None:
    """`group=null`, `group=1`, `group=true`, `group=${x}`: Hydra takes a group's option by name (a string),
    a list of names, or a sweep over names."""
    value = o.value()
    if isinstance(value, Glob):
        return
    values = list(o.sweep_iterator()) if o.is_sweep_override() and o.is_discrete_sweep() else [value]
    group = o.key_or_group
    if o.is_sweep_override() and not o.is_discrete_sweep():
        raise ConfigError(
            f"{o.input_line}: {group} is chosen by name, not from a range; list the options, e.g. "
            f"{group}={','.join(options[:2])} (of {options}), or glob(*) for all"
        )
    for value in values:
        if value is None or isinstance(value, (bool, int, float)) or _interpolation(value):
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            raise ConfigError(
                f"{group}={shown} is not an option of {group}; choose one of {options} (conf/{group}/), "
                f"or leave {group} out"
            )


def _refuse_named_deletion(o: Override, options: list[str]) -> None:
    """`~group=1`: a group is deleted as `~group`, or `~group=<the option it has>`."""
    if o.value() is not None and not isinstance(o.value(), str):
        raise ConfigError(
            f"{o.input_line}: ~{o.key_or_group} deletes the group; to name the option it deletes, give its name "
            f"(one of {options}), e.g. ~{o.key_or_group}={options[0]}"
        )


def _interpolation(value: object) -> bool:
    """Whether a value as typed is an OmegaConf interpolation (`${...}`), which no option's name is."""
    return isinstance(value, str) and OmegaConf.is_interpolation(OmegaConf.create({"value": value}), "value")


def _values(o: Override, options: list[str]) -> list[str]:
    """The option names an override selects: one, each of a sweep's, or those a glob matches."""
    value = o.value()
    if isinstance(value, Glob):
        return value.filter(options)
    if o.is_sweep_override():
        return [str(v) for v in o.sweep_iterator()] if o.is_discrete_sweep() else []
    return [str(value)] if value is not None else []
