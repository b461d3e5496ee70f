"""An Optuna study run through a Hydra launcher, with Optuna's ask-and-tell interface.

The sweeper plugin (`hydra_plugins/simclr_optuna_sweeper`) is a thin adapter onto `run_study`. Each round
asks the study for `n_jobs` trials, launches them as one batch (the launcher decides where: this process,
or others with submitit), and tells the study how each ended:

- completed: its objective (the value the script returned) and, with two `directions`, its wall time;
- pruned: the trial's job stopped at an epoch where the pruner said so (its status.json says `pruned`);
  Optuna takes its last reported validation figure;
- failed: the job raised, or returned no objective (the script records why in the job's status.json).

A trial's job finds its study through the storage (`simclr.jobs.optuna_trial`); an in-memory study is
shared with the jobs of this process through `ACTIVE`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from simclr.jobs.optuna_space import search_space, trial_overrides
from simclr.jobs.optuna_study import build_pruner, build_sampler, directions, open_storage
from simclr.storage import atomic_write_text

log = logging.getLogger("simclr")

# The study of this process's running sweep and its storage, for trial jobs launched in this process (an
# in-memory study has no address other processes could open): {"study": optuna.Study, "storage": BaseStorage}.
ACTIVE: dict[str, Any] = {}


@dataclass
class Outcome:
    """How one trial ended, for `study.tell` and the log."""

    state: optuna.trial.TrialState
    values: list[float] | None = None  # the objective, and the wall time in seconds with two directions
    note: str = ""


def create_study(sweeper: DictConfig) -> optuna.Study:
    """The study named by the sweeper config: created, or loaded from its storage and continued."""
    storage = open_storage(sweeper.storage) or optuna.storages.InMemoryStorage()
    stored = 0
    if sweeper.study_name:
        stored = next(
            (s.n_trials for s in optuna.get_all_study_summaries(storage) if s.study_name == sweeper.study_name), 0
        )
    study = optuna.create_study(
        storage=storage,
        study_name=sweeper.study_name,
        sampler=build_sampler(sweeper.sampler, stored),
        pruner=build_pruner(sweeper),
        directions=directions(sweeper),
        load_if_exists=True,
    )
    where = sweeper.storage or "memory"
    log.info("Optuna %s: study %s in %s, %d stored trials", optuna.__version__, study.study_name, where, stored)
    ACTIVE.update(study=study, storage=storage)
    return study


def run_study(
    sweeper: DictConfig,
    arguments: list[str],
    launch: Callable[[Sequence[Sequence[str]], int], Sequence[JobReturn]],
    sweep_dir: Path,
) -> optuna.Study:
    """Runs `sweeper.n_trials` trials in batches of `sweeper.n_jobs` through `launch(batch, first_job_index)`
    and writes <sweep_dir>/optimization_results.yaml. Returns the study."""
    space, fixed = search_space(OmegaConf.to_container(sweeper.params) if sweeper.params else None, arguments)
    study = create_study(sweeper)
    for override in fixed:  # as hydra-optuna-sweeper did: the fixed overrides are part of the study's record
        key, _, value = override.partition("=")
        study.set_user_attr(key, value)
    log.info("search space: %s; fixed: %s", {k: repr(d) for k, d in space.items()}, fixed)
    ran, failed = 0, 0  # this command's trials; its jobs are numbered 0, 1, ... in its sweep directory
    try:
        while ran < sweeper.n_trials:
            trials = [study.ask(space) for _ in range(min(sweeper.n_jobs, sweeper.n_trials - ran))]
            batch = [[*trial_overrides(fixed, t.params), f"hydra.sweeper.trial={t.number}"] for t in trials]
            for trial, ret in zip(trials, launch(batch, ran), strict=True):
                outcome = outcome_of(ret, len(study.directions))
                study.tell(trial, outcome.values, state=outcome.state)
                log.info("trial %d %s%s", trial.number, outcome.state.name.lower(), outcome.note)
                failed += outcome.state == optuna.trial.TrialState.FAIL
            ran += len(trials)
            if failed / ran > sweeper.max_failure_rate:
                log.error(
                    "%d of %d trials failed, more than hydra.sweeper.max_failure_rate=%s: no new trial starts",
                    failed,
                    ran,
                    sweeper.max_failure_rate,
                )
                break
    finally:
        ACTIVE.clear()
    write_results(study, sweep_dir)
    return study


def job_status(ret: JobReturn) -> dict[str, Any]:
    """The job's status.json ({} where it wrote none)."""
    out = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg is not None else None
    path = Path(str(out)) / "status.json" if out else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def outcome_of(ret: JobReturn, n_objectives: int) -> Outcome:
    """What to tell the study of a job: completed (its objective, and its wall time as the second one),
    pruned (status.json says so), or failed (it raised, or returned no objective)."""
    TrialState = optuna.trial.TrialState
    if ret.status == JobStatus.FAILED:
        return Outcome(TrialState.FAIL, note=": the job raised (its log has the traceback)")
    status = job_status(ret)
    if status.get("status") == "pruned":
        return Outcome(TrialState.PRUNED, note=f" at epoch {status.get('epoch')}")
    value = ret.return_value
    if value is None or status.get("status", "completed") != "completed":
        return Outcome(TrialState.FAIL, note=f": {status.get('error') or 'no objective returned'}")
    values = [float(value)]
    if n_objectives == 2:
        if status.get("wall_s") is None:
            return Outcome(TrialState.FAIL, note=": no wall time in its status.json")
        values.append(float(status["wall_s"]))
    return Outcome(TrialState.COMPLETE, values, note=f": {', '.join(f'{v:.4f}' for v in values)}")


def write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """<sweep_dir>/optimization_results.yaml: the best trial (one objective) or the Pareto front (two), of the
    whole study (a continued one included); not written when no trial of the study completed."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return
    record: dict[str, Any] = {"name": "optuna", "study_name": study.study_name}
    if len(study.directions) == 1:
        best = study.best_trial
        record.update(best_params=dict(best.params), best_value=float(best.value), best_trial=best.number)
    else:
        record["solutions"] = [
            {"number": t.number, "params": dict(t.params), "values": [float(v) for v in t.values]}
            for t in study.best_trials
        ]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / "optimization_results.yaml", yaml.safe_dump(record, sort_keys=False))
