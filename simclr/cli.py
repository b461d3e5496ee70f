"""Running an entry point as a Hydra job: user errors become one message; sweep jobs fail alone.

Every job writes <output_dir>/status.json: {"status": "completed" | "failed", "error", "overrides",
"wall_s"}. A single run that fails on user input exits with status 2 and one line; in a multirun
(`-m`) a failed job, whatever the exception (a batch that does not fit the GPU included), is recorded
and logged, and the sweep goes on with the next job.

A bad config value is refused in three places, each with exit status 2 and one line `error: ...`:
- while Hydra composes the config (`run_script`): a value of the wrong type, a key no schema has, a
  group option that does not exist, a malformed override; nothing is written;
- before a single run writes anything (`CheckConfig`, a Hydra callback: `on_run_start` comes before
  Hydra creates the run directory and its .hydra/): `simclr.schema.validate`, the ranges;
- first thing in every job (`run_job`): `validate` again, so that in a multirun a job with a bad value
  fails alone, recorded in its status.json, and the sweep goes on.

Optuna sweeps (`-m sweep=temperature_batch`, or `-m hydra/sweeper=optuna` with search spaces given as
overrides). The scripts return a validation top-1, so the study maximises: `CheckConfig` sets
hydra.sweeper.direction=maximize where the command line leaves the plugin's default (minimize), and
refuses a direction given as anything else; it refuses data.val_size=0 (no validation metric to
optimise) before the study starts, and a trial that draws data.val_size=0 fails alone. A failed job
returns None, which hydra-optuna-sweeper 1.3 records as a FAIL trial before it asks for the next one
(a job that raised would stop the study where max_failure_rate is exceeded; none does: `run_job` catches
every Exception of a multirun job). A study none of whose trials completed ends in the sweeper's
ValueError before the end-of-sweep report: `run_script` writes the summary and ends with one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
import time
import traceback
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf, read_write
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from simclr.errors import ConfigError, SimCLRError
from simclr.runs import log
from simclr.schema import describe_type, field_default, field_type, show, validate


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# The Optuna study under way (set by CheckConfig): its sweep directory, and whether the script's config
# has the end-of-sweep report (train_ssl.py: simclr.sweep.SweepReport), which writes a summary there.
_optuna_study_dir: Path | None = None
_optuna_study_reported = False


def optuna_sweep(hydra_cfg: DictConfig | None) -> bool:
    """Whether a Hydra config (the `hydra` node) runs the Optuna sweeper."""
    target = OmegaConf.select(hydra_cfg, "sweeper._target_", default="") if hydra_cfg is not None else ""
    return "hydra_optuna_sweeper" in str(target)


def check_objective(cfg: DictConfig) -> None:
    """An optimising sweeper needs the validation objective: data.val_size=0 leaves none (the monitor and
    the probe then report on the test split, which no sweep selects on)."""
    if cfg.data.val_size == 0:
        raise ConfigError(
            "data.val_size=0 leaves no validation metric for the Optuna sweeper to maximise (a sweep never "
            "selects on the test split); keep a validation split, e.g. data.val_size=5000, or run a grid "
            "without hydra/sweeper=optuna"
        )


_DIRECTION_OVERRIDE = re.compile(r"^[+~]*hydra\.sweeper\.direction=")


def check_optuna_sweep(config: DictConfig) -> None:
    """Before an Optuna study starts (`config` with its hydra node): a validation objective, maximised.

    The plugin's default direction is minimize, which would search for the worst encoder; unless the
    command line gives a direction, the study maximises. A direction given as anything else is refused.
    """
    sweeper = config.hydra.sweeper
    direction = sweeper.direction
    names = [
        getattr(d, "name", str(d)) for d in (direction if isinstance(direction, (list, ListConfig)) else [direction])
    ]
    given = [o for o in config.hydra.overrides.hydra if _DIRECTION_OVERRIDE.match(o)]
    if names != ["maximize"]:
        if given or len(names) != 1:
            shown = given[-1].split("=", 1)[1] if given else ",".join(names)
            raise ConfigError(
                f"hydra.sweeper.direction={shown} must be maximize: the script returns one validation top-1; "
                "give hydra.sweeper.direction=maximize or leave it out"
            )
        # As if given on the command line: the sweeper is built from this config after the callbacks'
        # start, and each job's config is composed again from these overrides (its .hydra/hydra.yaml
        # then records the direction the study used).
        with read_write(config.hydra):
            sweeper.direction = "maximize"
            config.hydra.overrides.hydra.append("hydra.sweeper.direction=maximize")
        log.info("Optuna sweep: direction maximize (the objective is a validation top-1)")
    check_objective(config)


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_status(out: Path, status: str, wall_s: float, error: str | None = None) -> None:
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) > 0:
        return  # under torchrun, SLURM or Lightning's DDP launcher only the first process reports
    out.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "error": error, "overrides": _overrides(), "wall_s": wall_s}
    (out / "status.json").write_text(json.dumps(record, indent=2) + "\n")


def finish_wandb(failed: bool) -> None:
    """Closes the W&B run of this job, if any, so that each job of a multirun gets its own run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=1 if failed else 0)


def run_job(job: Callable[[], Any], cfg: DictConfig) -> Any:
    """Validates cfg and runs job(); returns its result, or None for a failed job of a multirun."""
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    try:
        with _hydra_reports_job_errors():
            validate(cfg)
            if _in_multirun() and optuna_sweep(HydraConfig.get()):
                check_objective(cfg)  # a trial that drew data.val_size=0: failed, with the reason
            result = job()
    except SimCLRError as e:
        finish_wandb(failed=True)
        write_status(out, "failed", time.perf_counter() - start, str(e))
        log.error("%s", e)
        if _in_multirun():
            return None
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        finish_wandb(failed=True)
        write_status(out, "failed", time.perf_counter() - start, f"{type(e).__name__}: {e}")
        if not _in_multirun():
            raise
        log.error("job failed, the sweep goes on:\n%s", traceback.format_exc())
        return None
    finish_wandb(failed=False)
    write_status(out, "completed", time.perf_counter() - start)
    return result


class CheckConfig(Callback):
    """Hydra callback: a single run with a value out of range stops before Hydra writes anything.

    `on_run_start` comes after composition and before Hydra creates the run directory (with .hydra/
    and the log file); selected by `- override hydra/callbacks: check_config` in the primary configs.
    Multirun jobs are validated by `run_job` instead, so that a bad value fails its job alone.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            preset = OmegaConf.select(config, "hydra.runtime.choices.sweep")
            if preset is not None:
                raise ConfigError(f"sweep={preset} is a search over many runs; run it with -m (multirun)")
            validate(config)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)  # SystemExit passes through Hydra's callback wrapper, which turns exceptions into warnings

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """An Optuna study: maximised, on a validation metric (`check_optuna_sweep`); before any trial."""
        global _optuna_study_dir, _optuna_study_reported
        if not optuna_sweep(config.hydra):
            return
        try:
            check_optuna_sweep(config)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        # For run_script, should every trial fail: by then Hydra holds no config (HydraConfig is unset
        # between jobs). Resolved now from the config the sweeper writes with, so the same directory.
        _optuna_study_dir = Path(config.hydra.sweep.dir)
        callbacks = config.hydra.get("callbacks") or {}
        _optuna_study_reported = any("SweepReport" in str(c.get("_target_", "")) for c in callbacks.values())


# ---- errors of composition ---------------------------------------------------------------------------

_FULL_ERROR = "HYDRA_FULL_ERROR"
_NOT_HELD = object()
_held_full_error: object = _NOT_HELD  # the user's HYDRA_FULL_ERROR while run_script holds the variable


def run_script(hydra_main: Callable[[], Any]) -> None:
    """Runs a `@hydra.main` function; a config Hydra refuses while composing it ends with exit status 2
    and one line `error: <key>=<value> must be ...; <fix>` (Hydra's own report is several lines and
    exits 1). Use in the scripts: `if __name__ == "__main__": run_script(main)`.

    Hydra prints and exits by itself unless HYDRA_FULL_ERROR=1, so that is set while Hydra composes
    (and given back to the user's setting while a job runs: `run_job`), and the composition errors are
    caught here. With HYDRA_FULL_ERROR=1 set by the user, Hydra's full report is left alone.
    """
    global _held_full_error
    if os.environ.get(_FULL_ERROR) == "1":
        with _study_without_a_completed_trial():
            hydra_main()
        return
    _held_full_error = os.environ.get(_FULL_ERROR)
    os.environ[_FULL_ERROR] = "1"
    try:
        with _study_without_a_completed_trial():
            hydra_main()
    except (HydraException, OmegaConfBaseException) as e:
        print(f"error: {composition_error(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        _give_back_full_error()
        _held_full_error = _NOT_HELD


@contextmanager
def _study_without_a_completed_trial() -> Iterator[None]:
    """An Optuna study whose trials all failed: hydra-optuna-sweeper asks Optuna for the best trial, which
    raises ValueError("No trials are completed yet."), and Hydra never calls the end-of-sweep report.
    Writes the summary (the failed trials and their errors; where the script has the end-of-sweep report)
    and ends with exit status 1 and one line."""
    try:
        yield
    except ValueError as e:
        sweep_dir = _optuna_study_dir
        if sweep_dir is None or "No trials are completed yet" not in str(e):
            raise
        where = f"{sweep_dir}/summary.md" if _optuna_study_reported else f"the status.json files in {sweep_dir}"
        if _optuna_study_reported:
            from simclr.sweep import report  # not at the top: simclr.sweep is the reporting side of the scripts

            report(sweep_dir)
        print(f"error: no trial of the Optuna study completed; see {where}", file=sys.stderr)
        sys.exit(1)


def _give_back_full_error() -> None:
    if _held_full_error is _NOT_HELD:
        return
    if _held_full_error is None:
        os.environ.pop(_FULL_ERROR, None)
    else:
        os.environ[_FULL_ERROR] = str(_held_full_error)


@contextmanager
def _hydra_reports_job_errors() -> Iterator[None]:
    """While a job runs, Hydra reports a crash as usual (a trimmed traceback); in a multirun, run_script
    takes the composition of the next job back."""
    _give_back_full_error()
    try:
        yield
    finally:
        if _held_full_error is not _NOT_HELD and _in_multirun():
            os.environ[_FULL_ERROR] = "1"


_OMEGACONF_DETAIL = re.compile(r"^\s*(full_key|object_type|reference_type)[:=]")


def composition_error(e: BaseException) -> str:
    """One line for an error of Hydra's composition: the key, what it must be, and how to fix it."""
    text = str(e)
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__ or e.__context__
    cause = cause if isinstance(cause, OmegaConfBaseException) else None
    merging = re.match(r"Error merging override [+~]*(?P<key>[^=\s]+)=(?P<value>.*)", text)
    overriding = re.match(r"Could not override '(?P<key>[^']+)'", text)
    in_file = re.match(r"In '(?P<path>[^']+)': \w+ raised while composing config:", text)
    where = f" (in conf/{in_file['path']}.yaml)" if in_file else ""
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and (merging or overriding or in_file):
        plus = re.search(r"use (\+\S+)", text)
        return _unknown_key(cause, where, f"add it with {plus[1]}" if plus else "")
    if isinstance(cause, ValidationError) and merging:
        return _wrong_type(merging["key"], merging["value"])
    if isinstance(cause, ValidationError) and in_file and cause.full_key:
        value = re.search(r"Value '([^']*)'", str(cause))
        return _wrong_type(cause.full_key, value[1] if value else show(cause.value), where)
    if isinstance(e, MissingConfigException):
        missing = re.search(r"Could not find '(?P<group>.+)/(?P<name>[^/']+)'", text)
        options = re.findall(r"^\t(\S+)$", text.split("Config search path:")[0], re.M)
        if missing and options:
            group = missing["group"]
            return f"{group}={missing['name']} is not an option of {group}; choose one of {options} (conf/{group}/)"
    if isinstance(e, OverrideParseException):
        return " ".join(line.strip() for line in text.splitlines()[:2] if line.strip()) + (
            " (overrides are key=value, e.g. data.batch_size=256; quote values with spaces or brackets)"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _OMEGACONF_DETAIL.match(line)]
    lines = [line for line in lines if not line.startswith(("Config search path", "provider=", "Set the environment"))]
    return "; ".join(lines[:3]) or type(e).__name__


def _wrong_type(key: str, value: str, where: str = "") -> str:
    """`data.batch_size=abc` -> 'data.batch_size=abc must be an integer; give one, e.g. data.batch_size=512'."""
    path = key.split("[")[0]  # augmentation.crop_scale[1] -> the list
    typ = field_type(path)
    must = describe_type(typ) if typ is not None else "of another type"
    if dataclasses.is_dataclass(typ := _without_none(typ)):
        first = dataclasses.fields(typ)[0].name
        return f"{key}={value}{where} must be {must}; set its keys instead, e.g. {path}.{first}=..."
    default = field_default(path)
    example = f", e.g. {path}={show(default).replace(' ', '')}" if default is not None else ""
    return f"{key}={value}{where} must be {must}; give one{example}"


def _without_none(typ: Any) -> Any:
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return args[0] if len(args) == 1 and len(typing.get_args(typ)) == 2 else typ


def _unknown_key(cause: OmegaConfBaseException, where: str, fix: str) -> str:
    """`optimizer.lrr` -> 'optimizer.lrr is not a key of optimizer; did you mean optimizer.lr?'."""
    key = str(cause.full_key or cause.key)
    parent, _, name = key.rpartition(".")
    if not dataclasses.is_dataclass(cause.object_type):  # an open mapping (trainer, logger): keys may be added
        return f"{key}{where} is not set in conf/; {fix or f'add it with +{key}=VALUE'}"
    names = [f.name for f in dataclasses.fields(cause.object_type)]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?" if close else f"its keys are {names}"
    return f"{key}{where} is not a key of {parent or 'the config'}; {hint}"
