"""Hydra's sweep syntax -> Optuna distributions, and a trial's drawn values -> a job's overrides.

    loss.temperature='tag(log, interval(0.05, 1.0))'   -> FloatDistribution(0.05, 1.0, log=True)
    optimizer.lr='interval(1e-4, 1e-2)'                 -> FloatDistribution(1e-4, 1e-2)
    data.batch_size='choice(128, 256)' or 128,256       -> CategoricalDistribution((128, 256))
    trainer.max_epochs='range(2, 10, 2)'                -> IntDistribution(2, 8, step=2)
    'tag(int, interval(1, 8))'                          -> IntDistribution(1, 8)

The same syntax as hydra-optuna-sweeper 1.3, read with Hydra's own override parser (its Sweep types), so a
command line written for that plugin means the same here. A plain `key=value` fixes the key.
"""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from simclr.errors import ConfigError, first_line


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override (`override.is_sweep_override()`); ConfigError where
    Optuna refuses its bounds (a log scale from 0, say)."""
    try:
        return _distribution(override)
    except ValueError as e:  # Optuna's distributions check their bounds
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{override.input_line} is not a range Optuna can draw from: {first_line(e)}") from e


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    tags = value.tags if hasattr(value, "tags") else set()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([_plain(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        last = list(value.range())[-1:]
        if not last:
            raise ConfigError(f"{override.input_line} is an empty range; give range(start, stop) with start < stop")
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(last[0]), step=int(step), log="log" in tags)
        return FloatDistribution(float(start), float(last[0]), step=float(step))
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if not low < high:
            raise ConfigError(f"{override.input_line} is empty; give interval(low, high) with low < high")
        if "int" in tags:
            return IntDistribution(int(low), int(high), log="log" in tags)
        return FloatDistribution(float(low), float(high), log="log" in tags)
    raise ConfigError(f"{override.input_line} is a sweep Optuna cannot draw from; use choice, range or interval")


def _plain(value: Any) -> Any:
    """A choice as Optuna stores it (None, bool, int, float or str)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def search_space(params: dict[str, str] | None, arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions by key, fixed overrides) from the sweeper's `params` and the command line's task
    overrides; a key on the command line replaces the same key of `params` (a sweep or a fixed value)."""
    parser = OverridesParser.create()
    given = parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()])
    command_line = parser.parse_overrides(arguments)
    on_command_line = {o.get_key_element() for o in command_line}
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for override in [o for o in given if o.get_key_element() not in on_command_line] + command_line:
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def trial_overrides(fixed: list[str], params: dict[str, Any]) -> list[str]:
    """A trial's task overrides: the fixed ones as given, then each drawn value (`key=value`)."""
    return [*fixed, *(f"{key}={value}" for key, value in params.items())]
