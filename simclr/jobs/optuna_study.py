"""What an Optuna study of the scripts needs: its storage, sampler and pruner built from the sweeper config,
and the checks before its first trial.

The scripts return a validation top-1, so a study maximises it; with two objectives the second is the
trial's wall time, minimised. Refused before any trial starts (`check_optuna_sweep`, from the Hydra callback
`simclr.jobs.cli.CheckConfig`), each in one line with exit status 2: data.val_size=0 (no validation metric;
a sweep never selects on test), another direction, a stored study without a name or whose folder is
missing, and a pruner that could not work: without a validation monitor, with two objectives, with
arguments its class does not take, or with an in-memory study under a launcher whose trials run in other
processes (they could not reach it). A trial that draws data.val_size=0 fails alone.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.storages.journal import JournalFileBackend, JournalStorage

from simclr.config.sweeper import PRUNER_CLASSES
from simclr.errors import ConfigError, first_line
from simclr.jobs.optuna_space import search_space

log = logging.getLogger("simclr")
RDB_OPEN_ATTEMPTS = 4
IN_PROCESS_LAUNCHER = "basic"  # hydra/launcher=basic, Hydra's default: jobs run one after another in this process
SWEEPER = "hydra_plugins.simclr_optuna_sweeper.sweeper.OptunaSweeper"


def optuna_sweep(hydra_cfg: DictConfig | None) -> bool:
    """Whether a Hydra config (the `hydra` node) runs this project's Optuna sweeper."""
    target = OmegaConf.select(hydra_cfg, "sweeper._target_", default="") if hydra_cfg is not None else ""
    return str(target) == SWEEPER


def is_url(storage: str) -> bool:
    """An SQLAlchemy URL (a database) rather than a file path (an Optuna journal file)."""
    try:
        sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        return False
    return True


def open_storage(storage: str | None) -> optuna.storages.BaseStorage | None:
    """hydra.sweeper.storage -> Optuna's storage: None (in memory), a database (RDBStorage) for a URL, or a
    journal file (JournalStorage) for a path."""
    if not storage:
        return None
    if not is_url(storage):
        return JournalStorage(JournalFileBackend(str(storage)))
    sqlite = sqlalchemy.engine.make_url(storage).get_backend_name() == "sqlite"
    # Two sweeps writing one SQLite file wait for each other's lock rather than fail at once (sqlite3: 5 s).
    engine = {"connect_args": {"timeout": 60}} if sqlite else None
    for attempt in range(RDB_OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(storage, engine_kwargs=engine)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            # Two commands that open a new database at once both create Optuna's tables and stamp their
            # version; the second stamp fails (measured: UNIQUE constraint failed: alembic_version). The first
            # has finished by then, and opening again finds the tables made.
            if attempt == RDB_OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def directions(sweeper: DictConfig) -> list[str]:
    """The study's directions: `directions` when given, else [`direction`]."""
    given = sweeper.directions if sweeper.get("directions") else [sweeper.direction]
    return [str(d) for d in given]


def build_sampler(sampler: DictConfig, stored_trials: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of `hydra/sweeper/sampler=`. A study continued from its storage draws new points: a seeded
    sampler is seeded with seed + the number of stored trials (logged), not the seed that drew them."""
    if stored_trials and OmegaConf.select(sampler, "seed") is not None:
        seed = int(sampler.seed) + stored_trials
        log.info("derived: sampler seed %d (hydra.sweeper.sampler.seed + %d stored trials)", seed, stored_trials)
        return instantiate(sampler, seed=seed)
    return instantiate(sampler)


def build_pruner(sweeper: DictConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner named by hydra.sweeper.pruner, with the hydra.sweeper.pruner_args that are set as its
    keyword arguments (NopPruner for none)."""
    name = str(sweeper.get("pruner", "none"))
    if name == "none":
        return optuna.pruners.NopPruner()
    given = OmegaConf.to_container(sweeper.pruner_args) if sweeper.get("pruner_args") else {}
    args: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    try:
        return instantiate({"_target_": PRUNER_CLASSES[name], **args})
    except InstantiationException as e:  # the class refused an argument (TypeError) or its value (ValueError)
        cause = e.__cause__ or e
        shown = " ".join(f"hydra.sweeper.pruner_args.{k}={v}" for k, v in args.items())
        raise ConfigError(
            f"{shown} does not fit hydra.sweeper.pruner={name} ({PRUNER_CLASSES[name]}: "
            f"{first_line(cause)}); give that class's keyword arguments only (docs/sweeps.md)"
        ) from e


def check_optuna_sweep(config: DictConfig, job_only: bool = False) -> None:
    """Before a study (`config` with its hydra node): a validation objective, maximised, and a pruner that can
    work. With `job_only`, for one trial's config: only the objective."""
    if config.data.val_size == 0:
        raise ConfigError(
            "data.val_size=0 leaves no validation metric for the Optuna sweeper to maximise (a sweep never "
            "selects on the test split); keep a validation split, e.g. data.val_size=5000, or run a grid "
            "without hydra/sweeper=optuna"
        )
    if job_only:
        return
    sweeper = config.hydra.sweeper
    wanted = directions(sweeper)
    if wanted not in (["maximize"], ["maximize", "minimize"]):
        key = "directions" if sweeper.get("directions") else "direction"
        raise ConfigError(
            f"hydra.sweeper.{key}={','.join(wanted)} is not a study of the script's objectives: it returns a "
            "validation top-1 (maximize) and, as a second objective, the trial's wall time (minimize); give "
            "hydra.sweeper.direction=maximize or hydra.sweeper.directions=[maximize,minimize]"
        )
    params = OmegaConf.to_container(sweeper.params) if sweeper.get("params") else None
    search_space(
        params, OmegaConf.to_container(config.hydra.overrides.task)
    )  # an empty or impossible range is refused here
    if sweeper.storage:
        _check_storage(str(sweeper.storage), sweeper.study_name)
    if str(sweeper.pruner) != "none":
        _check_pruner(config, len(wanted))


def _check_pruner(config: DictConfig, objectives: int) -> None:
    sweeper, name = config.hydra.sweeper, f"hydra.sweeper.pruner={config.hydra.sweeper.pruner}"
    if objectives > 1:
        raise ConfigError(
            f"{name} needs one objective: Optuna prunes single-objective studies only; leave out "
            "hydra.sweeper.directions or give hydra.sweeper.pruner=none"
        )
    if config.trainer.get("limit_val_batches") == 0:
        raise ConfigError(
            f"{name} needs the validation kNN monitor, which trainer.limit_val_batches=0 switches off; leave "
            "trainer.limit_val_batches out or give hydra.sweeper.pruner=none"
        )
    launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
    choice = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher", IN_PROCESS_LAUNCHER)
    if not sweeper.storage and choice != IN_PROCESS_LAUNCHER:
        raise ConfigError(
            f"{name} with trials run in other processes ({launcher.rpartition('.')[2]}) needs a study they can "
            "reach; give hydra.sweeper.storage=sqlite:///runs/optuna.db (or a journal file) and "
            "hydra.sweeper.study_name=NAME"
        )
    build_pruner(sweeper)


def _check_storage(storage: str, study_name: str | None) -> None:
    """A stored study (hydra.sweeper.storage): named, so that the next command continues it instead of
    starting another; an SQLite or journal file in a folder that exists."""
    if not study_name:
        raise ConfigError(
            f"hydra.sweeper.storage={storage} needs hydra.sweeper.study_name=NAME: without a name every command "
            "starts a new study in the file instead of continuing one"
        )
    if is_url(storage):
        url = sqlalchemy.engine.make_url(storage)
        path = Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None
    else:
        path = Path(storage)
    if path is not None and not path.parent.is_dir():
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: the folder {path.parent} does not exist; create it or give another path"
        )
    try:  # a server that does not answer, a driver that is not installed: said now, not in the first trial
        optuna.get_all_study_summaries(open_storage(storage))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as e:
        raise ConfigError(
            f"hydra.sweeper.storage={storage} cannot be opened ({type(e).__name__}: {first_line(e)}); check the "
            "address, that the server is running and that its driver is installed (docs/sweeps.md, Stored studies)"
        ) from e
