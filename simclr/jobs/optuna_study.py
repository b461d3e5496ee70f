"""What an Optuna study of the scripts needs before and after its trials (hydra-optuna-sweeper).

The scripts return a validation top-1, so a study maximises: `check_optuna_sweep` sets
hydra.sweeper.direction=maximize where the command line leaves the plugin's default (minimize), as if it
were given there, and refuses a direction given as anything else. It refuses data.val_size=0 (no
validation metric; a sweep never selects on test) before the study starts, and a trial that draws it
fails alone. A stored study (hydra.sweeper.storage) must be named, and an SQLite file's folder exist.
A study none of whose trials completed ends in the sweeper's ValueError (Optuna has no best trial):
`study_without_a_completed_trial` writes the summary and ends with one line and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import sqlalchemy
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf, read_write

from simclr.errors import ConfigError
from simclr.training.trainer import log

# The study under way (set before its first trial): its sweep directory, and whether the script's config
# has the end-of-sweep report (train_ssl.py: simclr.jobs.sweep.SweepReport), which writes a summary there.
_study: dict = {}


def optuna_sweep(hydra_cfg: DictConfig | None) -> bool:
    """Whether a Hydra config (the `hydra` node) runs the Optuna sweeper."""
    target = OmegaConf.select(hydra_cfg, "sweeper._target_", default="") if hydra_cfg is not None else ""
    return "hydra_optuna_sweeper" in str(target)


def check_optuna_sweep(config: DictConfig, job_only: bool = False) -> None:
    """Before a study (`config` with its hydra node): a validation objective, maximised. With `job_only`,
    for one trial's config: only the objective."""
    if config.data.val_size == 0:
        raise ConfigError(
            "data.val_size=0 leaves no validation metric for the Optuna sweeper to maximise (a sweep never "
            "selects on the test split); keep a validation split, e.g. data.val_size=5000, or run a grid "
            "without hydra/sweeper=optuna"
        )
    if job_only:
        return
    sweeper = config.hydra.sweeper
    names = [
        getattr(d, "name", str(d)) for d in (sweeper.direction if _many(sweeper.direction) else [sweeper.direction])
    ]
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.hydra))
    given = [o.get_value_element_as_str() for o in parsed if o.key_or_group == "hydra.sweeper.direction"]
    if names != ["maximize"]:
        if given or len(names) != 1:
            raise ConfigError(
                f"hydra.sweeper.direction={given[-1] if given else ','.join(names)} must be maximize: the script "
                "returns one validation top-1; give hydra.sweeper.direction=maximize or leave it out"
            )
        # As if given on the command line: the sweeper is built from this config after the callbacks'
        # start, and each trial's .hydra/hydra.yaml then records the direction the study used.
        with read_write(config.hydra):
            sweeper.direction = "maximize"
            config.hydra.overrides.hydra.append("hydra.sweeper.direction=maximize")
        log.info("Optuna sweep: direction maximize (the objective is a validation top-1)")
    if sweeper.storage:
        _check_storage(str(sweeper.storage), sweeper.study_name, OmegaConf.select(sweeper, "sampler.seed"))
    callbacks = config.hydra.get("callbacks") or {}
    _study["dir"] = Path(config.hydra.sweep.dir)
    _study["reported"] = any("SweepReport" in str(c.get("_target_", "")) for c in callbacks.values())


def _check_storage(storage: str, study_name: str | None, seed: int | None) -> None:
    """A stored study (hydra.sweeper.storage): named, so that the next command continues it instead of
    starting another; an SQLite file in a folder that exists. A continued study with a fixed sampler seed
    would draw the earlier command's first points again: said, with the fix."""
    if not study_name:
        raise ConfigError(
            f"hydra.sweeper.storage={storage} needs hydra.sweeper.study_name=NAME: without a name every command "
            "starts a new study in the file instead of continuing one"
        )
    url = sqlalchemy.engine.make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).parent.is_dir():
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: the folder {Path(url.database).parent} does not exist; create it "
            "or give another path"
        )
    done = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}.get(study_name, 0)
    if done and seed is not None:
        log.warning(
            "Optuna study %s continues from %d stored trials; with hydra.sweeper.sampler.seed=%s the first new "
            "trials repeat the points of the command that used that seed first; give another seed, e.g. "
            "hydra.sweeper.sampler.seed=%d",
            study_name,
            done,
            seed,
            int(seed) + done,
        )


def _many(direction: object) -> bool:
    return isinstance(direction, (list, ListConfig))


@contextmanager
def study_without_a_completed_trial() -> Iterator[None]:
    """Around the script: a study with no completed trial (by the trials' status.json files) ends with the
    summary and one line, whatever the sweeper raised for it (Optuna: no best trial)."""
    try:
        yield
    except ValueError:
        sweep_dir = _study.get("dir")
        if sweep_dir is None or any(
            json.loads(p.read_text()).get("status") == "completed" for p in sweep_dir.glob("*/status.json")
        ):
            raise
        where = f"{sweep_dir}/summary.md" if _study["reported"] else f"the status.json files in {sweep_dir}"
        if _study["reported"]:
            from simclr.jobs.sweep import report  # the reporting side of the scripts, loaded only when needed

            report(sweep_dir)
        print(f"error: no trial of the Optuna study completed; see {where}", file=sys.stderr)
        sys.exit(1)
