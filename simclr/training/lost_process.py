"""The one-line report of a multi-process run whose collective failed: a process of the job was lost.

When a process dies (SIGKILL, a failed host), the others learn it in their next collective: at once where the
backend sees the connection close (gloo: "connection reset by peer"), or after the process group's timeout
where nothing closes (a hung process, a lost network link): `trainer.strategy.timeout` of `trainer=ddp`. gloo
raises a plain RuntimeError in both cases and NCCL a DistBackendError (subclasses of RuntimeError); torch
gives the lost peer no type of its own, so any such error of a process group larger than one is reported this
way, and the rest of its traceback goes to the job's log file.
"""

from __future__ import annotations

import os

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from simclr.errors import SimCLRError, first_line


class LostProcessError(SimCLRError):
    """A collective of a multi-process run failed or timed out: another process of the job stopped or hung."""


def group_size() -> int:
    """The number of processes of this job: the process group's, or the launcher's WORLD_SIZE when Lightning
    has already destroyed the group on its way out."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE") or 1)


def timeout_setting(cfg: DictConfig) -> str:
    """How long a collective waits, as the config sets it: 'trainer.strategy.timeout=600 s'."""
    seconds = OmegaConf.select(cfg, "trainer.strategy.timeout.seconds", default=None)
    if seconds is None:
        return "trainer.strategy.timeout (not set: torch's default for the backend)"
    return f"trainer.strategy.timeout={seconds:g} s"


def lost_process_error(e: BaseException, cfg: DictConfig) -> LostProcessError | None:
    """The report for `e` if it is a collective's failure in a multi-process run, else None."""
    world = group_size()
    if world < 2 or not (type(e) is RuntimeError or isinstance(e, dist.DistError)):
        return None
    checkpoints = f"{cfg.paths.output_dir}/checkpoints"
    return LostProcessError(
        f"a collective operation of this {world}-process run failed ({type(e).__name__}: {first_line(e)}): another "
        f"process stopped, or did not answer within {timeout_setting(cfg)}. Restarted (torchrun --max-restarts, a "
        f"SLURM requeue), the job resumes from the newest intact checkpoint in {checkpoints} with ckpt_path=auto"
    )
