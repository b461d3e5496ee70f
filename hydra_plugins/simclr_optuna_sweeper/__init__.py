"""This project's Optuna sweeper for Hydra: `hydra/sweeper=optuna` on Optuna >= 4 (docs/sweeps.md says why it
is here: hydra-optuna-sweeper 1.3, the newest release, pins optuna<3 and has no pruning).

Hydra imports every module under `hydra_plugins/` when it looks for plugins; this package only registers the
configs (`simclr.config.sweeper`) and adapts Hydra's Sweeper interface onto `simclr.jobs.optuna_sweep`.
"""
