"""Which process of a multi-process launch this is, known from the environment before Lightning starts.

torchrun sets RANK (the global rank), SLURM's srun SLURM_PROCID, and Lightning's own launcher LOCAL_RANK
and NODE_RANK. Every process of such a launch composes the config and runs the job function; only the
first one writes the run directory's files that are not Lightning's (Hydra's .hydra/ and log file,
status.json): the others would write the same files at the same time.
"""

from __future__ import annotations

import os

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_first_process() -> bool:
    """False in every process that a launcher numbered other than 0 (any of RANK_VARIABLES set above 0)."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def on_first_process(value: object, otherwise: object = None) -> object:
    """Resolver `${on_first_process:<value>,<otherwise>}`: `value` in the first process, else `otherwise`."""
    return value if is_first_process() else otherwise
