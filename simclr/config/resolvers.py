"""OmegaConf resolvers the configs use; importing `simclr` registers them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from simclr.jobs.ranks import on_first_process


def probe_run_dir(ckpt: str | None) -> str:
    """Where a probe run writes: next to the pretraining run it evaluates.

    <ssl run>/checkpoints/last.ckpt or <ssl run> itself -> <ssl run>/linear/last_<time> (a run directory
    without last.ckpt is probed at its newest checkpoint: newest_<time>); no ckpt -> runs/linear/random_<time>.
    """
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
    if not ckpt:
        return f"runs/linear/random_{stamp}"
    path = Path(ckpt)
    if path.is_dir():
        run = path.parent if path.name == "checkpoints" else path
        held = run / "checkpoints" if (run / "checkpoints").is_dir() else run
        return str(run / "linear" / f"{'last' if (held / 'last.ckpt').is_file() else 'newest'}_{stamp}")
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return str(run / "linear" / f"{path.stem}_{stamp}")


def sweep_group() -> str | None:
    """The multirun's sweep directory, so that W&B groups a sweep's runs; None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)
    return None


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("probe_run_dir"):
        OmegaConf.register_new_resolver("probe_run_dir", probe_run_dir)
    if not OmegaConf.has_resolver("sweep_group"):
        OmegaConf.register_new_resolver("sweep_group", sweep_group)
    if not OmegaConf.has_resolver("on_first_process"):
        OmegaConf.register_new_resolver("on_first_process", on_first_process)
