"""Pretraining throughput of what users run (`train_ssl`), against the bare step and the torchvision reference.

CPU (this project's 2-core machine; random images, a full-size epoch of 50,000):
    python benchmarks/throughput.py --arch resnet_tiny --width 16 --batch 256 --workers 2 --out throughput.json
GPU (one H100/H200, real CIFAR-10 in data/; what benchmarks/gpu_check.sh runs):
    python benchmarks/throughput.py --data-root data --workers 15 --warmup 20 --steps 100 --repeats 3 \
        --baseline-steps 20 --compile-ops --out throughput.json experiment=resnet18_sgd
Trailing arguments are Hydra overrides, composed exactly as `python train_ssl.py OVERRIDES` composes them
(`trainer=gpu` is chosen where CUDA is present, `trainer=cpu` elsewhere, unless an override picks one).

Rows; each one is warmed up for --warmup steps, then timed over --repeats windows of --steps steps with
the device synchronised at each clock read only, and reported as the median window. views/s counts both
views of every image; s/epoch is (50,000 // batch) steps of the row.
  trainer.fit     `simclr.jobs.train_ssl.train_ssl(cfg)` itself, with the callbacks a user gets (progress bar, CSV
                  logger, divergence guard, checkpoints: `--no-checkpoint` removes these) and a timing
                  callback (`benchmarks.common.StepTimer`) added through `trainer.callbacks`. Full epochs
                  of the data, so an epoch end (a last.ckpt write) falls inside the windows as often as
                  in a real run of that many steps; the kNN monitor is moved past the last epoch, and the
                  run stops after the timed steps. The run's figures (`RunFigures`, not switchable by
                  config) are drawn at fit start and end, outside the windows.
  bare step       the same `SimCLRModule` (`build_module`) and optimizer (`build_optimizer`), called
                  without the Trainer: two parameter draws, `views_loss`, backward, optimizer step,
                  zero_grad, under the trainer config's precision (bf16 autocast on CUDA, float32 on CPU),
                  batches cut from the split on the device as the Trainer's `DeviceBatches` cut them.
  torchvision x2  the project's reference path, what `augmentation.backend=torchvision` runs
                  (`simclr.data.per_image_batches`: per-image PIL transforms of the run's augmentation config,
                  crop ratio, blur and probabilities included, in the device batches' order) in --workers
                  DataLoader workers, the same encoder, head, loss, optimizer and batch: (1) float32,
                  contiguous, as public code runs it; (2) the project's precision and channels_last
                  (bf16 autocast on CUDA; on the CPU float32 + channels_last).
Augmentation: its share of the bare step (two parameter draws + two `augment.apply` per step, timed alone,
over the bare step's time), and its ops per view: eager (`simclr.training.profiling.count_ops` on one
`module.augment(images)`), compiled with --compile-ops (`torch.compile(augment.apply)`, kernels generated
by Inductor, caches off, plus the parameter draw's eager ops) and, on CUDA, kernel launches per view
counted with torch.profiler for both.
Writes everything as JSON (--out) with the device, driver, versions, CPU count and arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `simclr` and `benchmarks`

from benchmarks.common import (  # noqa: E402
    CIFAR_TRAIN_IMAGES,
    add_model_args,
    autocast_dtype,
    benchmark_overrides,
    compose_ssl_config,
    config_device,
    environment,
    sync,
    time_windows,
    write_random_cifar10,
)
from simclr.training.precision import choose_precision  # noqa: E402


# ---- rows ---------------------------------------------------------------------------------------------
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


# ---- augmentation op counts -----------------------------------------------------------------------------
def cuda_launches(fn: Callable[[], Any]) -> int:
    """GPU kernel launches (memcpy and memset included) of one call of fn, counted with torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.events()
    device_side = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return max(device_side, sum(len(getattr(e, "kernels", ())) for e in events))


def eager_op_counts(module: Any, x: torch.Tensor, dtype: torch.dtype | None) -> dict[str, Any]:
    """Compute ops of one view made eagerly (one `augment(images)` call), and of its two parts."""
    from simclr.training.profiling import count_ops

    augment, (b, _, h, w) = module.augment, x.shape
    with autocast(x.device, dtype):
        _, view = count_ops(augment, x)
        params, draw = count_ops(augment.sample_params, b, h, w, x.device)
        _, apply = count_ops(augment.apply, x, params)
        out = {
            "ops_per_view_eager": view.op_count,
            "sample_params_ops": draw.op_count,
            "apply_ops_eager": apply.op_count,
            "syncs_per_view_eager": len(view.syncs),
        }
        if x.device.type == "cuda":
            out["cuda_launches_per_view_eager"] = cuda_launches(lambda: augment(x))
    return out


def compiled_op_counts(module: Any, x: torch.Tensor, dtype: torch.dtype | None, sample_ops: int) -> dict[str, Any]:
    """Kernels Inductor generates for `torch.compile(augment.apply)` (caches off, so they are generated
    here), its graphs and graph breaks, and per view: the parameter draw's eager ops + those kernels.

    Library kernels Inductor calls (extern kernels) are not in `generated_kernel_count`; on CUDA the
    profiler's launch count per view covers everything.
    """
    import torch._dynamo
    import torch._inductor.config as inductor_config
    import torch._inductor.metrics as metrics

    augment, (b, _, h, w) = module.augment, x.shape
    torch._dynamo.reset()
    apply = torch.compile(augment.apply)
    params = augment.sample_params(b, h, w, x.device)
    no_cache = {k: v for k, v in {"force_disable_caches": True}.items() if hasattr(inductor_config, k)}
    with inductor_config.patch(**no_cache), autocast(x.device, dtype):
        metrics.reset()
        start = time.perf_counter()
        apply(x, params)
        sync(x.device)
        out: dict[str, Any] = {"compile_s": time.perf_counter() - start}
        kernels = metrics.generated_kernel_count
        if x.device.type == "cuda":
            out["cuda_launches_per_view_compiled"] = cuda_launches(
                lambda: apply(x, augment.sample_params(b, h, w, x.device))
            )
        explained = torch._dynamo.explain(augment.apply)(x, params)
    out.update(
        apply_kernels_compiled=kernels,
        graphs=explained.graph_count,
        graph_breaks=explained.graph_break_count,
        ops_per_view_compiled=sample_ops + kernels,
    )
    return out


# ---- the torchvision reference ------------------------------------------------------------------------
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


# ---- report ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    """All rows, the augmentation figures and the ratios, as one JSON-able dict."""
    from omegaconf import OmegaConf

    from simclr.data.cifar import load_split

    with tempfile.TemporaryDirectory(prefix="simclr_throughput_") as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "data"
        if not args.data_root:
            write_random_cifar10(root, args.images)
        overrides = benchmark_overrides(args, root, *(["model.compile=true"] if args.compile else []))
        cfg = compose_ssl_config(overrides, Path(tmp) / "run")
        device = config_device(cfg)
        images = load_split(root, train=True)[0]
        result: dict[str, Any] = {
            "environment": environment(),
            "args": vars(args),
            "overrides": overrides,
            "config": {
                "arch": cfg.model.arch,
                "width": cfg.model.width,
                "batch": cfg.data.batch_size,
                "precision": choose_precision(cfg.trainer).value,
                "channels_last": bool(cfg.model.get("channels_last", True)),
                "compile": bool(cfg.model.get("compile", False)),
                "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True, enum_to_str=True),
                "train_images": len(images),
                "data": "random uint8" if not args.data_root else str(root),
            },
        }
        rows = {"trainer_fit": bench_fit(cfg, args, len(images))}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows["bare_step"], aug, module = bench_bare(cfg, args, images, device)
        x = next(device_batches(images, rows["bare_step"]["batch"], 0, device))
        aug.update(eager_op_counts(module, x, autocast_dtype(cfg, device)))
        if args.compile_ops:
            aug.update(compiled_op_counts(module, x, autocast_dtype(cfg, device), aug["sample_params_ops"]))
        del module, x
        if not args.skip_baseline:
            rows["baseline_fp32"] = bench_baseline(cfg, args, images, device, project_format=False)
            rows["baseline_project"] = bench_baseline(cfg, args, images, device, project_format=True)
    fit = rows["trainer_fit"]["views_per_s"]
    result.update(
        rows=rows,
        augmentation=aug,
        ratios={f"fit_over_{k}": fit / r["views_per_s"] for k, r in rows.items() if k != "trainer_fit"},
    )
    return result


def print_table(result: dict[str, Any]) -> None:
    """The rows as a Markdown table, then the augmentation figures."""
    env, c, aug = result["environment"], result["config"], result["augmentation"]
    print(
        f"\n{env['device']}, driver {env['driver']}, torch {env['torch']}, lightning {env['lightning']}, "
        f"{env['cpu_count']} CPUs | {c['arch']} width {c['width']}, batch {c['batch']}, {c['precision']}, "
        f"{c['optimizer']['name']}, channels_last {c['channels_last']}, compile {c['compile']}"
    )
    print("| row | views/s | s/step | s/epoch (50k images) | trainer.fit / row |")
    print("|---|---|---|---|---|")
    fit = result["rows"]["trainer_fit"]["views_per_s"]
    for r in result["rows"].values():
        print(
            f"| {r['label']} | {r['views_per_s']:,.0f} | {r['s_per_step']:.4f} | {r['s_per_epoch']:.1f} "
            f"| {fit / r['views_per_s']:.2f} |"
        )
    line = (
        f"augmentation: {100 * aug['share_of_bare_step']:.1f}% of the bare step ({aug['s_per_step']:.4f} s/step); "
        f"ops per view eager {aug['ops_per_view_eager']} (draw {aug['sample_params_ops']} + apply "
        f"{aug['apply_ops_eager']}, {aug['syncs_per_view_eager']} syncs)"
    )
    if "ops_per_view_compiled" in aug:
        line += (
            f", compiled {aug['ops_per_view_compiled']} (draw {aug['sample_params_ops']} + "
            f"{aug['apply_kernels_compiled']} generated kernels, {aug['graphs']} graph(s), "
            f"{aug['graph_breaks']} break(s), compiled in {aug['compile_s']:.0f} s)"
        )
    print(line)
    if "cuda_launches_per_view_eager" in aug:
        print(
            f"CUDA launches per view: eager {aug['cuda_launches_per_view_eager']}, "
            f"compiled {aug.get('cuda_launches_per_view_compiled', '-')}"
        )
    f = result["rows"]["trainer_fit"]
    print(
        f"trainer.fit run: {f['wall_s']:.1f} s in all (setup {f['setup_s']:.1f} s, warm-up {f['warmup_s']:.1f} s, "
        f"teardown {f['teardown_s']:.1f} s), {f['epoch_ends_in_windows']} epoch end(s) in the timed steps"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(p, "Hydra overrides for train_ssl, e.g. experiment=resnet18_sgd")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before the first window")
    p.add_argument("--steps", type=int, default=20, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per row (the median is reported)")
    p.add_argument("--baseline-steps", type=int, help="steps per window of the torchvision rows (default --steps)")
    p.add_argument("--workers", type=int, default=2, help="view workers of the torchvision reference rows")
    p.add_argument("--images", type=int, default=CIFAR_TRAIN_IMAGES, help="random training images written")
    p.add_argument("--data-root", help="a real copy: DIR/cifar-10-batches-py/ (default: random images)")
    p.add_argument("--no-checkpoint", action="store_true", help="trainer.fit without its checkpoint callback")
    p.add_argument("--compile", action="store_true", help="model.compile=true (compiled views_loss)")
    p.add_argument("--compile-ops", action="store_true", help="count the kernels of the compiled augmentation")
    p.add_argument("--skip-baseline", action="store_true", help="no torchvision reference rows")
    p.add_argument("--out", default="throughput.json", help="JSON report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
