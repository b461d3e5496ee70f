"""The structure of a composed config, checked before any value's range: keys its schema lacks (added with
`+key=...`), sections deleted with `~key` that the job reads, interpolations `${...}` naming keys the config does
not have; `suggest` names the closest key. `simclr.config.rules.check` runs these first.
"""

from __future__ import annotations

import dataclasses
import difflib

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError

from simclr.errors import ConfigError, first_line


def check_keys(node: DictConfig, prefix: str = "") -> None:
    """Refuses keys their dataclass lacks: Hydra's `+key=value` adds them past the schema, and nothing
    reads them (OmegaConf refuses every other way of setting one)."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return
    names = [f.name for f in dataclasses.fields(schema)]
    if deleted := [name for name in names if name not in node]:  # `~key` on the command line
        key = f"{prefix}{deleted[0]}"
        raise ConfigError(f"{key} is deleted, but the job reads it; remove ~{key} from the command line")
    for key in node.keys():
        if key == "hydra" and not prefix:
            continue  # Hydra's own node (single runs): Hydra's to check
        if key not in names:
            where = prefix[:-1] or "the config"
            raise ConfigError(f"{prefix}{key} is not a key of {where}; {suggest(key, names, prefix)}")
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue  # a value given elsewhere: checked where it is given
        if isinstance(child := node.get(key), DictConfig):
            check_keys(child, f"{prefix}{key}.")


def check_interpolations(node: DictConfig | ListConfig, prefix: str = "") -> None:
    """Refuses an interpolation `${key}` whose key the config does not have, naming the value that holds it
    (OmegaConf would raise when the job first reads it, mid-run or in a library). Hydra's node is Hydra's."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if key == "hydra" and not prefix:
            continue
        name = f"{prefix}{key}"
        if OmegaConf.is_interpolation(node, key):
            try:
                node[key]
            except InterpolationKeyError as e:
                raw = OmegaConf.to_container(node, resolve=False)[key]
                raise ConfigError(
                    f"{name}={raw} cannot be resolved ({first_line(e)}); an interpolation names a key of the "
                    "config, e.g. ${data.batch_size}"
                ) from None
            except InterpolationResolutionError:
                continue  # a resolver that needs the running job (${hydra:runtime.output_dir}): the job's to resolve
        elif isinstance(child := node[key], (DictConfig, ListConfig)):
            check_interpolations(child, f"{name}.")


def suggest(key: str, names: list[str], prefix: str = "") -> str:
    """'did you mean <prefix>lr?' for the closest of `names`, else the list of names."""
    close = difflib.get_close_matches(str(key), names, n=1)
    return f"did you mean {prefix}{close[0]}?" if close else f"its keys are {names}"
