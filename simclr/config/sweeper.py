"""The schema of `hydra/sweeper=optuna`: the study, its sampler (`hydra/sweeper/sampler=`) and its pruner.

The field names and meanings are those of hydra-optuna-sweeper 1.3 (direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params, sampler), so command lines written for that plugin keep
working; `directions`, `pruner`, `pruner_args` and `trial` are this project's (docs/sweeps.md). Samplers
and pruners are Optuna's own classes, built from these nodes with `hydra.utils.instantiate`.

Registered under `hydra/sweeper` by `hydra_plugins/simclr_optuna_sweeper`, where Hydra finds plugins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from simclr.config.schema import Choice

Direction = Choice("Direction", [(d, d) for d in ("maximize", "minimize")])
# hydra.sweeper.pruner: which of Optuna's pruners stops losing trials; none keeps every trial to its end.
Pruner = Choice("Pruner", [(p, p) for p in ("none", "median", "successive_halving", "hyperband")])
PRUNER_CLASSES = {
    "median": "optuna.pruners.MedianPruner",  # below the median of earlier trials at the same epoch
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",  # asynchronous successive halving (ASHA)
    "hyperband": "optuna.pruners.HyperbandPruner",  # successive halving in several brackets
}


@dataclass
class PrunerArgs:
    """`hydra.sweeper.pruner_args.*`: keyword arguments of the chosen pruner's Optuna class; null (the default)
    leaves Optuna's default. Steps are epochs: the validation monitor reports once per epoch it runs."""

    # MedianPruner
    n_startup_trials: int | None = None  # trials that run to the end before any is pruned (Optuna: 5)
    n_warmup_steps: int | None = None  # epochs of each trial never pruned (Optuna: 0)
    interval_steps: int | None = None
    n_min_trials: int | None = None
    # SuccessiveHalvingPruner and HyperbandPruner
    min_resource: Any = None  # epochs before the first rung ("auto" or an integer)
    reduction_factor: int | None = None  # 1 of every reduction_factor trials goes on at each rung
    min_early_stopping_rate: int | None = None
    bootstrap_count: int | None = None
    max_resource: Any = None  # HyperbandPruner: epochs of a whole trial ("auto": read from the first trial)


@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10  # drawn at random before TPE models the completed (and pruned) trials
    n_ei_candidates: int = 24
    multivariate: bool = False
    group: bool = False
    constant_liar: bool = False  # True: running trials count as bad, so parallel trials spread out


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any | None = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    inc_popsize: int = 2
    use_separable_cma: bool = False


@dataclass
class NSGAIISamplerConfig:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class QMCSamplerConfig:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"
    scramble: bool = False


SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "qmc": QMCSamplerConfig,
}


@dataclass
class OptunaSweeperConfig:
    _target_: str = "hydra_plugins.simclr_optuna_sweeper.sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    # The scripts return a validation top-1: a study maximises it. With `directions` (two objectives: the
    # top-1 and the trial's wall time in seconds), `direction` is not used.
    direction: Direction = Direction.maximize
    directions: list[Direction] | None = None
    # Where the study lives: None (in memory, this command only), an SQLAlchemy URL (sqlite:///runs/optuna.db,
    # postgresql://...), or a file path (an Optuna journal file, for shared file systems without a database).
    storage: str | None = None
    study_name: str | None = None
    n_trials: int = 20  # trials this command runs (a continued study keeps its earlier ones)
    n_jobs: int = 1  # trials launched at once (one batch); the launcher decides where they run
    max_failure_rate: float = 1.0  # failed fraction of this command's trials above which no new trial starts
    params: dict[str, str] | None = None  # key: sweep override (tag(log, interval(a, b)), choice(...), ...)
    pruner: Pruner = Pruner.none
    pruner_args: PrunerArgs = field(default_factory=PrunerArgs)
    trial: int | None = None  # set by the sweeper in each trial's config: the trial's number in the study
