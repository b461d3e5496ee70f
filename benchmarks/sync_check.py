"""Checks on a GPU that training steps never make the host wait for the device, with CUDA's sync debug mode.

    python benchmarks/sync_check.py --data-root data          # GPU: default config (ResNet-18, batch 512, bf16)
    python benchmarks/sync_check.py --arch resnet_tiny --width 4 --batch 16 --steps 6   # CPU: runs, checks nothing

Runs `train_ssl` as a user does (progress bar, CSV logging, divergence guard, checkpoints) for --steps
steps of one epoch, with a callback (`SyncDebug`) that sets `torch.cuda.set_sync_debug_mode("error")`
at the start of every step that is not a log step (`simclr.training.progress.is_log_step`; the loggers read
values on log steps by design) and back to "default" on log steps, for the first --skip steps (cuDNN
autotuning, optimizer state), when validation starts, at the end of the epoch and on any exception.
In "error" mode any synchronising CUDA call (`.item()`, `nonzero`, a device-to-host copy, a blocking
host-to-device copy) raises at once, with the Python stack of the op that made it.

Exit 0 and "sync check: N steps, no synchronisation" (or, without CUDA, a line saying nothing was
checked: tests/training/test_sync_free.py checks the same steps on the CPU with a dispatch recorder); exit 1
with the error and its stack when a step synchronised; exit 2 when the run failed otherwise.
Trailing arguments are Hydra overrides for train_ssl; --out writes the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `simclr` and `benchmarks`

from benchmarks.common import (  # noqa: E402
    add_model_args,
    benchmark_overrides,
    compose_ssl_config,
    write_random_cifar10,
)

SYNC_MESSAGE = "synchronizing CUDA operation"  # in the RuntimeError that sync debug mode "error" raises


class SyncDebug(pl.Callback):
    """Turns CUDA's sync debug mode to "error" for the training steps that must not synchronise.

    `checked` lists the global steps run in "error" mode, `log_steps` the log steps left in "default",
    `step` the step running now (where an error happened). The last instance is `SyncDebug.last`.
    Without CUDA it changes nothing and only records the steps.
    """

    last: SyncDebug | None = None

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.cuda = torch.cuda.is_available()
        self.checked: list[int] = []
        self.log_steps: list[int] = []
        self.step: int | None = None
        SyncDebug.last = self

    def _mode(self, mode: str) -> None:
        if self.cuda:
            torch.cuda.set_sync_debug_mode(mode)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        from simclr.training.progress import is_log_step

        self.step = trainer.global_step
        if is_log_step(trainer):
            self.log_steps.append(self.step)
            self._mode("default")
        elif self.step < self.skip:
            self._mode("default")
        else:
            self.checked.append(self.step)
            self._mode("error")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mode("default")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mode("default")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._mode("default")  # before Lightning's teardown, which may synchronise


def check_config(args: argparse.Namespace, root: Path, out: Path) -> Any:
    """The user's config for one epoch of --steps steps, kNN off, with the SyncDebug callback."""
    from omegaconf import open_dict

    overrides = benchmark_overrides(args, root)
    cfg = compose_ssl_config(overrides, out)
    with open_dict(cfg):
        cfg.trainer.max_epochs = 1
        cfg.trainer.limit_train_batches = args.steps
        cfg.trainer.check_val_every_n_epoch = 2
        cfg.probe.enabled = False
        cfg.trainer.callbacks = [
            *(cfg.trainer.get("callbacks") or []),
            {"_target_": "benchmarks.sync_check.SyncDebug", "skip": args.skip},
        ]
    return cfg


def run(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Runs the check; (exit status, result record)."""
    from benchmarks import sync_check  # the module Hydra imports the callback from (this file may be __main__)
    from simclr.jobs.train_ssl import train_ssl
    from simclr.training.precision import choose_precision

    with tempfile.TemporaryDirectory(prefix="simclr_sync_check_") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "data"
        cfg = check_config(args, root, Path(tmp) / "run")
        if not args.data_root:
            write_random_cifar10(root, (args.steps + 1) * int(cfg.data.batch_size))
        record: dict[str, Any] = {
            "cuda": torch.cuda.is_available(),
            "config": f"{cfg.model.arch} batch {cfg.data.batch_size} {choose_precision(cfg.trainer).value}",
            "skip": args.skip,
        }
        try:
            train_ssl(cfg)
        except Exception as e:  # noqa: BLE001 - every failure is reported, a sync one with exit 1
            dbg = sync_check.SyncDebug.last
            found = SYNC_MESSAGE in str(e) or any(SYNC_MESSAGE in str(c) for c in _causes(e))
            record.update(
                status="synchronisation" if found else "error",
                step=dbg.step if dbg else None,
                error=f"{type(e).__name__}: {e}",
                stack=traceback.format_exc(),
            )
            return (1 if found else 2), record
    dbg = sync_check.SyncDebug.last
    checked = len(dbg.checked) if record["cuda"] else 0
    record.update(checked_steps=checked, log_steps=dbg.log_steps, steps_run=dbg.step + 1)
    record["status"] = "no synchronisation" if record["cuda"] else "nothing checked (no CUDA)"
    return 0, record


def _causes(e: BaseException) -> list[BaseException]:
    out, seen = [], e
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
        out.append(seen)
    return out


def report(status: int, record: dict[str, Any]) -> str:
    """The one line (and, on failure, the stack) the check prints."""
    if status == 1:
        return f"sync check: FAILED, a synchronising CUDA operation at step {record['step']}:\n{record['stack']}"
    if status == 2:
        return f"sync check: the run failed at step {record['step']} (not a synchronisation):\n{record['stack']}"
    if not record["cuda"]:
        return (
            f"sync check: no CUDA device: {record['steps_run']} steps ran, nothing checked (sync debug mode "
            f"needs a GPU; tests/training/test_sync_free.py checks these steps on the CPU)"
        )
    return (
        f"sync check: {record['checked_steps']} steps, no synchronisation "
        f"({record['config']}; steps before {record['skip']} and log steps {record['log_steps']} left unchecked)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p, "Hydra overrides for train_ssl")
    p.add_argument("--steps", type=int, default=30, help="training steps run")
    p.add_argument("--skip", type=int, default=2, help="first steps left unchecked (autotuning, optimizer state)")
    p.add_argument("--data-root", help="DIR/cifar-10-batches-py/ (default: random images in a temp dir)")
    p.add_argument("--out", help="write the result as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status, record = run(args)
    print(report(status, record), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
