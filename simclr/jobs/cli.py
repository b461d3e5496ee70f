"""Running an entry point as a Hydra job: a refused config is one line and exit status 2; sweep jobs fail alone.

A bad value is refused once per job, with `error: <key>=<value> must be ...; <fix>`:
- while Hydra composes (a wrong type, a key no schema has, an unknown choice or group option, a malformed
  override): OmegaConf and Hydra raise, and `describe` builds the line from the exception's fields;
- by `simclr.config.rules.check` (ranges, values that go together): for a single run in `CheckConfig.on_run_start`,
  before Hydra creates the run directory; for a multirun job in `run_job`, so that the job fails alone.
Every job writes <output_dir>/status.json: {"status": "completed" | "failed" | "pruned", "error", "overrides",
"wall_s"}, and for a pruned trial "epoch", the epochs it trained.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from simclr.config.keys import suggest
from simclr.config.rules import check, show
from simclr.config.schema import PRIMARY_SCHEMAS, TrainSSLConfig, choices
from simclr.config.signature_schema import describe_type
from simclr.errors import ConfigError, DiskFullError, first_line
from simclr.jobs.group_overrides import check_group_overrides
from simclr.jobs.optuna_study import check_optuna_sweep, optuna_sweep
from simclr.jobs.reporting import finish_wandb, record_in_log_files, write_status
from simclr.storage import file_being_written, no_space
from simclr.training.lost_process import LostProcessError
from simclr.training.resilience import disk_full_error, user_error
from simclr.training.trainer import log

CONF = Path(__file__).resolve().parents[2] / "conf"  # the repository's conf/, beside the entry points


def _mode() -> RunMode | None:
    return HydraConfig.get().mode if HydraConfig.initialized() else None


def run_script(hydra_main: Callable[[], Any], config_name: str) -> None:
    """Runs a `@hydra.main` function on conf/<config_name>.yaml (`if __name__ == "__main__": run_script(main,
    "train_ssl")`): what Hydra or OmegaConf refuse ends in one line and exit status 2, and so do the overrides
    they would answer with a traceback (`check_group_overrides`). HYDRA_FULL_ERROR=1 makes Hydra raise instead
    of printing its own report; a user who set it gets the exception itself."""
    user_wants_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        check_group_overrides(sys.argv[1:], CONF, config_name, PRIMARY_SCHEMAS.get(config_name))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        if user_wants_full_error:
            raise
        print(f"error: {describe(e, sys.argv[1:])}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a full disk while Hydra writes the run directory (.hydra/, the log), before run_job
        cause = no_space(e)
        if cause is None or user_wants_full_error:
            raise
        path = file_being_written(e) or Path.cwd()
        print(f"error: {disk_full_error(path, cause, checkpoints=None, kind='run directory')}", file=sys.stderr)
        sys.exit(2)


def describe(e: BaseException, args: list[str]) -> str:
    """One line for what Hydra or OmegaConf refused while composing (`args`: the command line)."""
    if isinstance(e, OverrideParseException):
        return (
            f"{e.override} is not a valid override ({first_line(Exception(e.message))}); overrides are key=value, "
            "e.g. data.batch_size=256; quote values with spaces or brackets"
        )
    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options:
        group, _, name = e.missing_cfg_file.rpartition("/")
        return f"{group}={name} is not an option of {group}; choose one of {sorted(e.options)} (conf/{group}/)"
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__ or e.__context__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return _omegaconf_error(cause, _overrides(args), _conf_dirs(args))
    return f"{type(e).__name__}: {first_line(e)}"


def _overrides(args: list[str]) -> dict[str, str]:
    """{key: value as typed} of the command line's overrides."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    except OverrideParseException:
        return {}
    return {o.key_or_group: str(o.input_line).partition("=")[2] for o in parsed if not o.is_sweep_override()}


def _conf_dirs(args: list[str]) -> list[Path]:
    """The config directories of the command line (--config-path / -cp, --config-dir / -cd), then conf/."""
    dirs = []
    for arg, following in zip(args, [*args[1:], ""], strict=True):
        flag, equals, value = arg.partition("=")
        if flag in ("--config-path", "-cp", "--config-dir", "-cd"):
            dirs.append(Path(value if equals else following))
    return [*dirs, CONF]


def _omegaconf_error(cause: OmegaConfBaseException, given: dict[str, str], conf_dirs: list[Path]) -> str:
    key = str(cause.full_key).split("[")[0]  # augmentation.crop_scale[1] -> the list
    where = "" if key in given else _conf_file(key, conf_dirs)
    value = given.get(key, show(cause.value))
    parent, _, name = key.rpartition(".")
    schema = cause.object_type if dataclasses.is_dataclass(cause.object_type) else None
    if "[" in str(cause.full_key):  # an item of a list: the list's own field
        schema = OmegaConf.get_type(OmegaConf.select(OmegaConf.structured(TrainSSLConfig), parent))
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        if schema is None:  # an open mapping (trainer, logger): keys are added with +
            return f"{key}{where} is not set in conf/; add it with +{key}={value}"
        names = [f.name for f in dataclasses.fields(schema)]
        hint = suggest(name, names, f"{parent}." if parent else "")
        return f"{key}{where} is not a key of {parent or 'the config'}; {hint}"
    fields = {f.name: f for f in dataclasses.fields(schema)} if schema else {}
    typ = typing.get_type_hints(schema).get(name) if schema else None
    if isinstance(typ, type) and issubclass(typ, Enum):
        return f"{key}={value!r}{where} is not known; choose one of {choices(typ)}"
    example = _default(fields[name]) if name in fields else None
    hint = f"give one, e.g. {key}={show(example).replace(' ', '')}" if example is not None else "give one"
    return f"{key}={value}{where} must be {describe_type(typ)}; {hint}"


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # a list, or a section (no one-line example)
        return None if dataclasses.is_dataclass(value := f.default_factory()) else value
    return None if f.default is dataclasses.MISSING or isinstance(f.default, str) and "${" in f.default else f.default


def _conf_file(key: str, conf_dirs: list[Path]) -> str:
    """' (in conf/optimizer/adam.yaml)': the config files that set `key` (a value Hydra refused while merging
    a file, not the command line), the first directory that has any; '' when none does."""
    for conf in conf_dirs:
        found = []
        for path in sorted(conf.rglob("*.yaml")):
            group = path.parent.relative_to(conf).as_posix()
            is_global = group == "." or path.read_text().startswith("# @package _global_")
            inner = key if is_global else key.removeprefix(f"{group.replace('/', '.')}.")
            if (is_global or inner != key) and _sets(OmegaConf.load(path), inner):
                shown = Path("conf") if conf == CONF else conf.resolve()
                found.append((shown / path.relative_to(conf)).as_posix())
        if found:
            return f" (in {', '.join(found)})"
    return ""


_NOT_SET = object()


def _sets(node: DictConfig, key: str) -> bool:
    """Whether a config file gives `key` a value (an interpolation too: it is not resolved here, out of context)."""
    return OmegaConf.select(node, key, default=_NOT_SET, throw_on_resolution_failure=False) is not _NOT_SET


def run_job(job: Callable[[], Any], cfg: DictConfig) -> Any:
    """Checks cfg (unless `CheckConfig` did, for a single run) and runs job(); returns its result, or None
    for a failed job of a multirun (the Optuna sweeper records that as a failed trial and goes on).

    A SimCLRError, and any write that failed for lack of space (`user_error`), ends a single run with one line
    `error: <message>` on stderr and exit status 2, and fails a multirun job alone."""
    start, out, multirun = time.perf_counter(), Path(cfg.paths.output_dir), _mode() == RunMode.MULTIRUN
    try:
        if _mode() != RunMode.RUN:
            check(cfg)
            if multirun and optuna_sweep(HydraConfig.get()):
                check_optuna_sweep(cfg, job_only=True)  # a trial that drew data.val_size=0
        result = job()
    except Exception as e:
        finish_wandb(failed=True)
        error = user_error(e, cfg)
        if error is None:
            write_status(out, "failed", time.perf_counter() - start, f"{type(e).__name__}: {e}")
            if not multirun:
                raise
            log.error("job failed, the sweep goes on:\n%s", traceback.format_exc())
            return None
        write_status(out, "failed", time.perf_counter() - start, str(error))
        if multirun:
            log.error("%s", error)
            return None
        if isinstance(error, LostProcessError):  # maybe not a lost process: the log file keeps the traceback
            record_in_log_files(f"{error}\n{traceback.format_exc()}")
        elif not isinstance(error, DiskFullError):  # the log file is on the full disk: no record there
            record_in_log_files(str(error))
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    finish_wandb(failed=False)
    pruned = result.get("pruned_at_epoch") if isinstance(result, dict) else None
    write_status(out, "pruned" if pruned else "completed", time.perf_counter() - start, epoch=pruned)
    return result


class CheckConfig(Callback):
    """Hydra callback (`- override hydra/callbacks: check_config`): a single run breaking a rule stops in
    `on_run_start`, before Hydra creates the run directory; an Optuna study is checked before any trial."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        preset = OmegaConf.select(config, "hydra.runtime.choices.sweep")
        self._refuse_on(
            lambda: check(config), preset and f"sweep={preset} is a search over many runs; run it with -m (multirun)"
        )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if optuna_sweep(config.hydra):
            self._refuse_on(lambda: check_optuna_sweep(config))
        else:
            self._refuse_on(lambda: _check_grid_sweep(OmegaConf.to_container(config.hydra.overrides.task)))

    @staticmethod
    def _refuse_on(checker: Callable[[], None], error: str | None = None) -> None:
        try:
            if error:
                raise ConfigError(error)
            checker()
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)  # SystemExit passes Hydra's callback wrapper, which turns exceptions into warnings


def _check_grid_sweep(overrides: list[str]) -> None:
    """Hydra's basic sweeper runs every combination of lists and ranges; an interval has no such list."""
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override() and o.is_interval_sweep():
            raise ConfigError(
                f"{o.input_line} samples from an interval, which only a sampling sweeper does: add "
                f"hydra/sweeper=optuna, or list the values, e.g. {o.key_or_group}=0.1,0.2 (docs/sweeps.md)"
            )
