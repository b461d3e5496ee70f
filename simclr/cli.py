"""Running an entry point as a Hydra job: user errors become one message; sweep jobs fail alone.

Every job writes <output_dir>/status.json: {"status": "completed" | "failed", "error", "overrides",
"wall_s"}. A single run that fails on user input exits with status 2 and one line; in a multirun
(`-m`) a failed job, whatever the exception (a batch that does not fit the GPU included), is recorded
and logged, and the sweep goes on with the next job.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from simclr.errors import SimCLRError
from simclr.runs import log


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
    """Runs job(); returns its result, or None for a failed job of a multirun."""
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    try:
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
