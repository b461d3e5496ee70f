"""Registers `hydra/sweeper=optuna` and its samplers (`hydra/sweeper/sampler=tpe|random|cmaes|nsgaii|qmc`)."""

from hydra.core.config_store import ConfigStore

from simclr.config.sweeper import SAMPLERS, OptunaSweeperConfig

store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConfig, provider="simclr")
for name, node in SAMPLERS.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="simclr")
