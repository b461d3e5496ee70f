"""Command lines that Hydra and OmegaConf would answer with a traceback, refused first with one line.

Two overrides reach code paths that raise exception types nobody can tell from a bug (Hydra 1.3, OmegaConf
2.3): `group=null` (a ValueError while Hydra builds the defaults list) and a key of a group that the command
does not select, such as `train_linear.py model.width=8`, whose `model` defaults to null (an AssertionError
inside OmegaConf.update). Both are read here from the command line, with Hydra's own override parser, and
from the primary config's defaults list and the experiment presets it names.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

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


def check_group_overrides(args: list[str], conf: Path, config_name: str) -> None:
    """Refuses (ConfigError) `group=null` and a key of a group this command line leaves unselected (when the
    command composes conf/<config_name>.yaml: not with another config name or directory)."""
    overrides, flags = split_command_line(args)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException:
        return  # Hydra reports a malformed override itself, in one line (simclr.jobs.cli.describe)
    if flags & OTHER_CONFIG:
        parsed = [o for o in parsed if "." not in o.key_or_group]  # the null check only
    options = groups(conf)
    selected = {g for g, choice in default_choices(conf, config_name).items() if choice is not None}
    for o in parsed:
        if o.key_or_group in options and not o.is_delete():
            _refuse_null(o, options[o.key_or_group])
            selected.add(o.key_or_group)
            for option in _values(o):
                selected |= _preset_selects(conf, o.key_or_group, option)
    for o in parsed:
        group = o.key_or_group.split(".")[0]
        if "." in o.key_or_group and group in options and group not in selected:
            raise ConfigError(
                f"{o.input_line} sets a key of {group}, which this command does not select ({config_name}.py's "
                f"{group} is null); choose one first, e.g. {group}={options[group][0]} (one of {options[group]})"
            )


def _refuse_null(o: Override, options: list[str]) -> None:
    """`group=null`, `group=1`, `group=true`: Hydra takes a group's option by name (a string) or a list of names."""
    values = list(o.sweep_iterator()) if o.is_sweep_override() and o.is_discrete_sweep() else [o.value()]
    group = o.key_or_group
    for value in values:
        if value is None or isinstance(value, (bool, int, float)):
            shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
            raise ConfigError(
                f"{group}={shown} is not an option of {group}; choose one of {options} (conf/{group}/), "
                f"or leave {group} out"
            )


def _values(o: Override) -> list[str]:
    """The option names an override selects: one, or each of a sweep's."""
    if o.is_sweep_override():
        return [str(v) for v in o.sweep_iterator()] if o.is_discrete_sweep() else []
    value = o.value()
    return [str(value)] if value is not None else []
