"""A trial's side of an Optuna study: the job finds its study and reports the validation monitor to it.

The sweeper (simclr/jobs/optuna_sweep.py) sets hydra.sweeper.trial, the trial's number, in each trial's
config. The job opens the study the same way the sweeper did: through hydra.sweeper.storage (a database or a
journal file, so that trials run by submitit in other processes reach it), or, for an in-memory study, the
sweeper's own study object in this process (`ACTIVE`). It writes each report with Optuna's public storage
API (`set_trial_intermediate_value`) and asks the study's pruner (`BasePruner.prune`), the two steps of
`Trial.report` and `Trial.should_prune`, whose Trial objects only the process that asked for them holds.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
from hydra.core.hydra_config import HydraConfig

from simclr.jobs.optuna_study import build_pruner, open_storage, optuna_sweep
from simclr.jobs.optuna_sweep import ACTIVE
from simclr.training.trainer import log


def trial_reporter() -> Callable[[int, float], bool] | None:
    """`report(epoch, value) -> prune?` for the running job when it is a trial of a study with a pruner, else
    None (a single run, a grid job, or a study without pruning)."""
    if not HydraConfig.initialized() or not optuna_sweep(HydraConfig.get()):
        return None
    sweeper = HydraConfig.get().sweeper
    if sweeper.trial is None or str(sweeper.pruner) == "none":
        return None
    active = ACTIVE.get("study")
    if active is not None and (sweeper.study_name is None or active.study_name == sweeper.study_name):
        study, storage = active, ACTIVE["storage"]  # the sweeper's own study: trials run in its process
    else:
        storage = open_storage(sweeper.storage)
        study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=build_pruner(sweeper))
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(sweeper.trial))
    log.info(
        "trial %d of study %s: val/knn_top1 goes to its pruner (%s)", sweeper.trial, study.study_name, sweeper.pruner
    )

    def report(epoch: int, value: float) -> bool:
        storage.set_trial_intermediate_value(trial_id, epoch, value)
        prune = study.pruner.prune(study, storage.get_trial(trial_id))
        if prune:
            log.info("trial %d pruned at epoch %d (val/knn_top1 %.4f)", sweeper.trial, epoch, value)
        return prune

    return report
