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
Utilisation (benchmarks/utilisation.py): the FLOPs of one view's forward and backward (torch's FLOP counter),
the model FLOP/s that makes at trainer.fit's views/s, the peak matmul FLOP/s of the compute dtype measured
in the same run, their ratio (MFU), and one eager step's time by phase from torch.profiler.
Writes everything as JSON (--out) with the device, driver, versions, CPU count and arguments.
The rows are timed in benchmarks/throughput_rows.py, the op counts taken in benchmarks/augment_ops.py;
this script composes the config, runs them in that order and writes the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for `simclr` and `benchmarks`

from benchmarks.augment_ops import compiled_op_counts, eager_op_counts  # noqa: E402
from benchmarks.common import (  # noqa: E402
    CIFAR_TRAIN_IMAGES,
    add_model_args,
    autocast_dtype,
    benchmark_overrides,
    compose_ssl_config,
    config_device,
    environment,
    write_random_cifar10,
)
from benchmarks.throughput_rows import bench_bare, bench_baseline, bench_fit, build_bare, device_batches  # noqa: E402
from benchmarks.utilisation import measure as measure_utilisation  # noqa: E402
from simclr.training.precision import choose_precision  # noqa: E402


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
                "matmul_weight_grad": bool(cfg.model.get("matmul_weight_grad", True)),
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
        del module
        util_module, util_optimizer = build_bare(cfg, device)  # eager, whatever model.compile says
        fit_views = rows["trainer_fit"]["views_per_s"]
        utilisation = measure_utilisation(util_module, util_optimizer, x, autocast_dtype(cfg, device), fit_views)
        del util_module, util_optimizer, x
        if not args.skip_baseline:
            rows["baseline_fp32"] = bench_baseline(cfg, args, images, device, project_format=False)
            rows["baseline_project"] = bench_baseline(cfg, args, images, device, project_format=True)
    fit = rows["trainer_fit"]["views_per_s"]
    result.update(
        rows=rows,
        augmentation=aug,
        utilisation=utilisation,
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
    print_utilisation(result["utilisation"])
    f = result["rows"]["trainer_fit"]
    print(
        f"trainer.fit run: {f['wall_s']:.1f} s in all (setup {f['setup_s']:.1f} s, warm-up {f['warmup_s']:.1f} s, "
        f"teardown {f['teardown_s']:.1f} s), {f['epoch_ends_in_windows']} epoch end(s) in the timed steps"
    )


def print_utilisation(u: dict[str, Any]) -> None:
    """FLOPs, achieved and peak FLOP/s, MFU, and the phases of one eager step."""
    peak = u["peak"]
    print(
        f"utilisation: {u['flops_per_view'] / 1e6:,.1f} MFLOP a view (forward + backward, torch's counter); "
        f"trainer.fit {u['model_flops_per_s'] / 1e9:,.1f} GFLOP/s; peak {peak['flops_per_s'] / 1e9:,.1f} GFLOP/s "
        f"({peak['dtype']} matmul, n = {peak['size']}); MFU {100 * u['mfu']:.1f}%"
    )
    phases = u["phases_s_per_step"]
    total = sum(phases.values())
    shares = ", ".join(f"{name} {1e3 * s:.1f} ms ({100 * s / total:.0f}%)" for name, s in phases.items())
    print(f"one eager step by phase (torch.profiler): {shares}")


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
