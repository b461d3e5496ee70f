"""The timed rows of `benchmarks/throughput.py`: trainer.fit, the bare step and the torchvision reference.

Each `bench_*` function builds what its row runs from the composed train_ssl config, times it with
`benchmarks.common` (warm-up steps, then --repeats windows of --steps steps, the device synchronised at
each clock read only) and returns one row from `summarise`: seconds per step (the median window),
views per second (both views of every image) and seconds per 50,000-image epoch. What each row runs,
and why, is in benchmarks/throughput.py's module docstring.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from benchmarks.common import CIFAR_TRAIN_IMAGES, autocast_dtype, time_windows


def summarise(label: str, windows_s: list[float], steps: int, batch: int, **extra: Any) -> dict[str, Any]:
    """One row from its timed windows (seconds each, `steps` steps of `batch` images).

    s_per_step: median window / steps (s); views_per_s: 2 * batch / s_per_step; s_per_epoch: the
    steps of a 50,000-image epoch at s_per_step (s).
    """
    s = statistics.median(windows_s) / steps
    return {
        "label": label,
        "s_per_step": s,
        "views_per_s": 2 * batch / s,
        "s_per_epoch": (CIFAR_TRAIN_IMAGES // batch) * s,
        "repeats_s_per_step": [w / steps for w in windows_s],
        "steps": steps,
        "batch": batch,
        **extra,
    }


def fit_config(cfg: Any, args: argparse.Namespace, train_images: int) -> Any:
    """The user's config with the timing callback added, kNN moved past the end, and enough epochs."""
    from omegaconf import open_dict

    from simclr.config.derived import derive_run_values

    cfg = copy.deepcopy(cfg)
    batch = derive_run_values(cfg).per_device_batch
    epoch_steps = train_images // batch
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and limit > 0:
        epoch_steps = min(epoch_steps, limit)
    needed = args.warmup + args.steps * args.repeats + 1  # the timer's last clock read is a step's start
    epochs = math.ceil(needed / max(1, epoch_steps))
    timer = {
        "_target_": "benchmarks.common.StepTimer",
        "warmup": args.warmup,
        "steps": args.steps,
        "repeats": args.repeats,
    }
    extra = [timer] + ([{"_target_": "benchmarks.common.NoCheckpoints"}] if args.no_checkpoint else [])
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
        cfg.trainer.check_val_every_n_epoch = epochs + 1  # no kNN pass in (or after) the timed steps
        cfg.probe.enabled = False
        cfg.trainer.callbacks = [*(cfg.trainer.get("callbacks") or []), *extra]
    return cfg


def bench_fit(cfg: Any, args: argparse.Namespace, train_images: int) -> dict[str, Any]:
    """The trainer.fit row: `train_ssl(cfg)` timed by `StepTimer` (seconds, views of both views)."""
    from benchmarks.common import StepTimer
    from simclr.config.derived import derive_run_values
    from simclr.jobs.train_ssl import train_ssl

    cfg = fit_config(cfg, args, train_images)
    derived = derive_run_values(cfg)
    if derived.world_size != 1:
        raise SystemExit("the benchmark runs one process: use trainer.devices=1")
    start = time.perf_counter()
    train_ssl(cfg)
    end = time.perf_counter()
    timer = StepTimer.last
    if timer is None or len(timer.windows_s) != args.repeats:
        raise SystemExit(
            f"trainer.fit ended before the {args.warmup} + {args.repeats} x {args.steps} steps were timed; "
            f"use more --images or fewer --steps"
        )
    expected = args.steps * derived.per_device_batch
    if any(n != expected for n in timer.images):
        raise SystemExit(f"timed windows held {timer.images} images, expected {expected} each")
    return summarise(
        "trainer.fit (train_ssl: progress bar, CSV log, divergence guard, "
        + ("no checkpoints)" if args.no_checkpoint else "checkpoints)"),
        timer.windows_s,
        args.steps,
        derived.global_batch,
        warmup=args.warmup,
        checkpointing=not args.no_checkpoint,
        epoch_ends_in_windows=timer.epoch_ends,
        wall_s=end - start,
        setup_s=timer.train_start - start,  # train_ssl called -> training starts (data, model, figures)
        warmup_s=timer.marks[0] - timer.train_start,  # the warm-up steps (autotuning, compilation)
        teardown_s=end - timer.marks[-1],  # last clock read -> train_ssl returns (checkpoint, figures)
    )


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast at `dtype` on `device`, or nothing for float32 (dtype None)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def build_bare(cfg: Any, device: torch.device) -> tuple[Any, torch.optim.Optimizer]:
    """The run's SimCLRModule (training mode, on `device`) and its optimizer, as `train_ssl` builds them."""
    from omegaconf import OmegaConf

    from simclr.config.derived import derive_run_values
    from simclr.jobs.train_ssl import build_module
    from simclr.training.optim import build_optimizer

    torch.manual_seed(int(cfg.seed))
    lr = derive_run_values(cfg).lr
    module = build_module(cfg, lr).to(device).train()
    optimizer = build_optimizer(module, OmegaConf.to_container(cfg.optimizer, resolve=True, enum_to_str=True), lr)
    return module, optimizer


def device_batches(images: torch.Tensor, batch: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless uint8 batches (B, 3, H, W) cut on `device` as the Trainer's loader cuts them, epoch after epoch."""
    from simclr.data.device_batches import DeviceBatches

    batches = DeviceBatches(images.to(device), torch.zeros(len(images), dtype=torch.long), batch, seed)
    while True:
        for x, _, _ in batches:
            yield x


def bench_bare(
    cfg: Any, args: argparse.Namespace, images: torch.Tensor, device: torch.device
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The bare-step row, the augmentation's time (s per step) and share, and the module (for op counts)."""
    from simclr.config.derived import derive_run_values

    batch = derive_run_values(cfg).per_device_batch
    dtype = autocast_dtype(cfg, device)
    module, optimizer = build_bare(cfg, device)
    augment, batches = module.augment, device_batches(images, batch, int(cfg.seed), device)

    def step() -> None:
        x = next(batches)
        b, _, h, w = x.shape
        with autocast(device, dtype):
            first, second = (augment.sample_params(b, h, w, x.device) for _ in range(2))
            loss = module.views_loss(x, first, second)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def augment_only() -> None:
        x = next(batches)
        b, _, h, w = x.shape
        with autocast(device, dtype):
            for _ in range(2):
                augment.apply(x, augment.sample_params(b, h, w, x.device))

    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark", False))
    windows = time_windows(step, device, args.warmup, args.steps, args.repeats)
    row = summarise(
        "bare step (same module and optimizer, no Trainer)", windows, args.steps, batch, precision=str(dtype)
    )
    aug_windows = time_windows(augment_only, device, args.warmup, args.steps, args.repeats)
    aug_s = statistics.median(aug_windows) / args.steps
    aug = {
        "s_per_step": aug_s,
        "repeats_s_per_step": [w / args.steps for w in aug_windows],
        "share_of_bare_step": aug_s / row["s_per_step"],
        "compiled_in_step": bool(cfg.model.get("compile", False)),
    }
    return row, aug, module


def reference_batches(cfg: Any, images: torch.Tensor, workers: int, device: torch.device) -> Any:
    """`augmentation.backend=torchvision`'s batches for the run's config (`PerImageBatches`; each pass is the
    next epoch): (view1, view2 float32 (B, 3, H, W), labels int64 (B,), indices int64 (B,)), on the CPU."""
    from omegaconf import OmegaConf

    from simclr.config.derived import derive_run_values
    from simclr.data.per_image_batches import PerImageBatches
    from simclr.views.torchvision_reference import torchvision_pipeline

    aug = OmegaConf.to_container(cfg.augmentation, resolve=True, enum_to_str=True)
    return PerImageBatches(
        images,
        torch.zeros(len(images), dtype=torch.long),  # random images: no labels, and the loss needs none
        torchvision_pipeline(aug),
        batch_size=derive_run_values(cfg).per_device_batch,
        seed=int(cfg.seed),
        workers=workers,
        pin_memory=device.type == "cuda",
    )


def bench_baseline(
    cfg: Any, args: argparse.Namespace, images: torch.Tensor, device: torch.device, project_format: bool
) -> dict[str, Any]:
    """A torchvision reference row: float32 + contiguous, or (project_format) the config's precision + channels_last."""
    from omegaconf import open_dict

    from simclr.config.derived import derive_run_values

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.model.channels_last = project_format
        cfg.model.compile = False
    dtype = autocast_dtype(cfg, device) if project_format else None
    batch = derive_run_values(cfg).per_device_batch
    module, optimizer = build_bare(cfg, device)
    loader = reference_batches(cfg, images, args.workers, device)
    state = {"it": iter(loader)}

    def step() -> None:
        try:
            v1, v2, _, _ = next(state["it"])
        except StopIteration:  # the next epoch: a new permutation, as in a run
            state["it"] = iter(loader)
            v1, v2, _, _ = next(state["it"])
        views = torch.cat([v1, v2]).to(device, non_blocking=True)
        with autocast(device, dtype):
            z1, z2 = module.head(module(views)).chunk(2)
            loss = module.criterion(z1, z2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = args.baseline_steps or args.steps
    windows = time_windows(step, device, args.warmup, steps, args.repeats)
    state.clear()
    fmt = "channels_last" if project_format else "contiguous"
    precision = "bf16 autocast" if dtype == torch.bfloat16 else str(dtype or "float32").replace("torch.", "")
    note = " (CPU: no bf16)" if project_format and dtype is None else ""
    label = f"torchvision reference (per-image), {args.workers} workers, {precision} {fmt}{note}"
    return summarise(label, windows, steps, batch, workers=args.workers, precision=precision, memory_format=fmt)
