"""The numeric precision of a run: `trainer.precision=auto` chooses bf16 autocast where the hardware
computes bfloat16 natively, else float32; any other value is the user's and is kept.

On a CPU, native means AVX512-BF16 or AMX instructions (this project's 2-core EPYC has AVX512-BF16: the
quick start's encoder runs 1.96x the views/s in bf16, README). torch 2.14 has no public query for them;
`torch.cpu._is_avx512_bf16_supported` / `_is_amx_tile_supported` are what torch's own CPU tests use. On a
GPU, `torch.cuda.is_bf16_supported(including_emulation=False)`. Under bf16 autocast the NT-Xent logits
(simclr/models/loss.py), the kNN similarities (simclr/evaluation/knn.py) and the probe's linear layer
(simclr/training/probe.py) stay float32; convolutions, the head and feature extraction run in bf16.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch

log = logging.getLogger("simclr")
AUTO = "auto"


class Precision(NamedTuple):
    value: str  # a Lightning precision: "bf16-mixed", "32-true", ...
    why: str  # one phrase: how it was chosen

    def record(self) -> dict[str, str]:
        """What checkpoints and results.json keep: {"precision", "precision_reason"}."""
        return {"precision": self.value, "precision_reason": self.why}


def native_bf16(accelerator: str) -> tuple[bool, str]:
    """(whether `accelerator` computes bfloat16 natively here, what says so)."""
    if accelerator in ("gpu", "cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return ok, "the GPU computes bfloat16" if ok else "the GPU has no native bfloat16"
    avx512_bf16, amx = torch.cpu._is_avx512_bf16_supported(), torch.cpu._is_amx_tile_supported()
    found = [name for name, has in (("AVX512-BF16", avx512_bf16), ("AMX", amx)) if has]
    return bool(found), f"the CPU has {' and '.join(found)}" if found else "the CPU has no AVX512-BF16 or AMX"


def choose_precision(trainer_cfg: Any) -> Precision:
    """The precision the Trainer runs with: `trainer.precision` as given, or for `auto` bf16-mixed where
    the accelerator has native bfloat16, else 32-true."""
    asked = str(trainer_cfg.get("precision", "32-true"))
    if asked != AUTO:
        return Precision(asked, "trainer.precision as given")
    native, why = native_bf16(str(trainer_cfg.get("accelerator", "cpu")))
    return Precision("bf16-mixed" if native else "32-true", f"trainer.precision=auto: {why}")
