"""Lightning callbacks the tests attach through `trainer.callbacks`, by `_target_` path.

Kept apart from tests/helpers.py: the DDP processes spawned by `trainer=ddp_sim` and the scripts the tests start
import this module by that path, so it imports Lightning and torch alone."""

from __future__ import annotations

import json
import os
import signal as signal_module
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch


class RecordBatches(pl.Callback):
    """Saves, per process and epoch, the dataset indices of the training batches and the loss dtypes."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.indices: list[torch.Tensor] = []
        self.loss_dtypes: set[str] = set()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.indices.append(batch[2].cpu() if len(batch) == 3 else torch.empty(0))
        self.loss_dtypes.add(str(outputs["loss"].dtype))
        if not torch.isfinite(outputs["loss"]):
            raise AssertionError(f"non-finite loss at step {trainer.global_step}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "indices": torch.cat(self.indices),
            "loss_dtypes": sorted(self.loss_dtypes),
            "world_size": trainer.world_size,
        }
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt")
        self.indices, self.loss_dtypes = [], set()


class SlowDown(pl.Callback):
    """Sleeps after each training batch, so that a test can signal a run in the middle of an epoch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        import time

        time.sleep(self.seconds)


class PoisonWeights(pl.Callback):
    """Sets the first parameter tensor to NaN before optimizer step `step`: a forced divergence."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.parameters()).mul_(float("nan"))


class RecordSyncs(pl.Callback):
    """Records, from the second training step to the end of the first epoch, every host-device
    synchronisation (simclr.training.profiling.DispatchRecorder), each tagged with the step it happened in
    and whether that step was a log step. The last instance is kept in `RecordSyncs.last`."""

    last: RecordSyncs | None = None

    def __init__(self) -> None:
        from simclr.training.profiling import DispatchRecorder

        self.recorder = DispatchRecorder()
        self.steps: list[tuple[int, bool]] = []  # (global step before the step, is it a log step)
        self._active = False
        self.progress_bar_items: dict[str, Any] = {}
        RecordSyncs.last = self

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        from simclr.training.progress import is_log_step

        if trainer.current_epoch == 0 and batch_idx == 1 and not self._active:
            # Non-fused optimizers count steps in CPU tensors and read them on the host; the fused
            # CUDA optimizers that GPU runs use keep them on the device, so these reads are exempt.
            states = [s for opt in trainer.optimizers for s in opt.state.values()]
            self.recorder.exempt = [s["step"] for s in states if isinstance(s.get("step"), torch.Tensor)]
            self.recorder.__enter__()
            self._active = True
        if self._active:
            self.recorder.tag = trainer.global_step
            self.steps.append((trainer.global_step, is_log_step(trainer)))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recorder.tag = "epoch end"  # the kNN monitor, then the epoch's end: not training steps

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.progress_bar_callback is not None and trainer.current_epoch == 0:
            self.progress_bar_items = trainer.progress_bar_callback.get_metrics(trainer, pl_module)
        if self._active:
            self.recorder.__exit__(None, None, None)
            self._active = False


class RecordFirstDraw(pl.Callback):
    """Saves, per process, the crop boxes its first training step draws (from a copy of its generator)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == 0:
            copy = torch.Generator(device=pl_module.device)
            copy.set_state(pl_module.generator.get_state())
            b, _, h, w = batch[0].shape
            crops = pl_module.augment.sample_params(b, h, w, pl_module.device, copy).crop
            self.out_dir.mkdir(parents=True, exist_ok=True)
            torch.save(
                {"crop": crops.cpu(), "seed": pl_module.hparams.seed}, self.out_dir / f"rank{trainer.global_rank}.pt"
            )


class HeadInEvalMode(pl.Callback):
    """Leaves the projection head in eval mode when fitting starts: a bug Lightning should warn about."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.head.eval()


class RecordProbeBatches(pl.Callback):
    """Keeps, in `RecordProbeBatches.last`, the indices (and features) of every training and validation batch."""

    last: RecordProbeBatches | None = None

    def __init__(self) -> None:
        self.train: list[tuple[torch.Tensor, torch.Tensor]] = []  # (features, indices) per batch
        self.val: list[torch.Tensor] = []
        RecordProbeBatches.last = self

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.train.append((batch[0].detach().cpu(), batch[2].cpu()))

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.val.append(batch[2].cpu())


class RecordEncoderInputs(pl.Callback):
    """Saves the (H, W) sizes the encoder saw in training and in evaluation, as {"train": [...], "eval": [...]}."""

    def __init__(self, out_file: str) -> None:
        self.out_file = Path(out_file)
        self.sizes: dict[str, set[tuple[int, int]]] = {"train": set(), "eval": set()}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.sizes["train" if module.training else "eval"].add(tuple(args[0].shape[-2:]))

        pl_module.encoder.register_forward_pre_hook(record)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({k: sorted(v) for k, v in self.sizes.items()}, self.out_file)


class LoseNode(pl.Callback):
    """Under torchrun: the worker of node `node` (torchrun's GROUP_RANK) sends itself `signal` (SIGKILL: a lost
    node; SIGSTOP: a hung one) before training batch `batch` of epoch `epoch`, once per run (killed.json marks it).

    Leaves timestamps (time.time()) in `out_dir`: killed.json (the moment of the signal), failed_<rank>.json (a
    surviving process saw the fit fail: when, and the exception's type), started_<rank>_<n>.json (a process
    began training, from epoch `epoch`)."""

    def __init__(self, out_dir: str, node: int = 1, epoch: int = 1, batch: int = 2, signal: str = "SIGKILL") -> None:
        self.out_dir, self.node, self.epoch, self.batch = Path(out_dir), node, epoch, batch
        self.signal = getattr(signal_module, signal)

    def _write(self, name: str, **record: Any) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / name).write_text(json.dumps({"time": time.time(), **record}))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = len(list(self.out_dir.glob(f"started_{trainer.global_rank}_*.json")))
        self._write(f"started_{trainer.global_rank}_{n}.json", epoch=trainer.current_epoch)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        node = int(os.environ.get("GROUP_RANK", "-1"))
        if (node, trainer.current_epoch, batch_idx) == (self.node, self.epoch, self.batch):
            if not (self.out_dir / "killed.json").exists():
                self._write("killed.json", rank=trainer.global_rank, signal=self.signal.name, pid=os.getpid())
                os.kill(os.getpid(), self.signal)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        kinds = [f"{t.__module__}.{t.__qualname__}" for t in type(exception).__mro__]
        self._write(f"failed_{trainer.global_rank}.json", types=kinds, error=str(exception)[:300])
