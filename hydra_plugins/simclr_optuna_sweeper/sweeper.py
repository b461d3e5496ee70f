"""Hydra's Sweeper interface onto `simclr.jobs.optuna_sweep.run_study` (the study's logic lives there)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """`hydra/sweeper=optuna`: an Optuna study whose trials Hydra's launcher runs (hydra.sweeper.* in
    simclr/config/sweeper.py)."""

    def __init__(self, **_: Any) -> None:
        # Hydra passes hydra.sweeper's values (its sampler already built); the study is built from the config
        # node that setup() receives, so that a sampler seeded anew for a continued study can be derived there.
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def launch(self, batch: Sequence[Sequence[str]], first_job: int) -> Sequence[JobReturn]:
        self.validate_batch_is_legal(batch)
        return self.launcher.launch(batch, initial_job_idx=first_job)

    def sweep(self, arguments: list[str]) -> Any:
        from simclr.jobs.optuna_sweep import run_study  # torch and Optuna load only when a study runs

        assert self.config is not None
        return run_study(self.config.hydra.sweeper, arguments, self.launch, Path(self.config.hydra.sweep.dir))
