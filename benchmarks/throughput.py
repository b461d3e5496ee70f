"""Pretraining throughput: this project's training step against the usual per-image pipeline.

    python benchmarks/throughput.py --arch resnet18 --batch 512 --out throughput.json

(a) project: uint8 batches already in device memory -> SimCLRAugment on the device (two views, per-sample
    parameters) -> one encoder forward over both views -> head -> NT-Xent -> backward -> optimizer step,
    under bf16 autocast and channels_last on a GPU (float32 on CPU), as `trainer=gpu` runs it.
(b) baseline: torchvision's per-image transforms (RandomResizedCrop, flip, ColorJitter p=0.8, grayscale
    p=0.2, ToTensor, Normalize) in DataLoader worker processes, two views per image, float32, the same
    encoder, head, loss and batch: what the common public SimCLR implementations do.

Each path is warmed up, then timed over --steps steps, --repeats times, synchronising the device before
every clock read; medians are reported. The project's step is also split into augmentation and model
time. Prints a table and writes JSON. Images are random uint8 (throughput does not depend on content).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from simclr.augment import CIFAR10_MEAN, CIFAR10_STD, SimCLRAugment
from simclr.loss import NTXentLoss
from simclr.nets import CifarResNet, ProjectionHead

VIEWS_PER_EPOCH = 100_000  # 50,000 images x 2 views


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, steps: int, warmup: int, repeats: int) -> list[float]:
    """Seconds per step, one median-able figure per repeat."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return times


class Model(torch.nn.Module):
    def __init__(self, arch: str, width: int) -> None:
        super().__init__()
        self.encoder = CifarResNet(arch, width)
        self.head = ProjectionHead(self.encoder.feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def make_step(model: Model, device: torch.device, amp: bool, channels_last: bool, fused: bool):  # noqa: ANN201
    loss_fn = NTXentLoss(0.5)
    kwargs = {"fused": True} if fused else {}
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4, **kwargs)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def step(views: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            z1, z2 = model(views.contiguous(memory_format=fmt)).chunk(2)
            loss = loss_fn(z1, z2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


class PerImageViews(Dataset):
    """The baseline's dataset: PIL images, two torchvision-transformed views each."""

    def __init__(self, images: torch.Tensor) -> None:
        from torchvision import transforms as T

        self.images = images.permute(0, 2, 3, 1).numpy()
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(32),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.ToTensor(),
                T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def bench_project(args: argparse.Namespace, device: torch.device, images: torch.Tensor) -> dict:
    gpu = device.type == "cuda"
    model = Model(args.arch, args.width).to(device).to(memory_format=torch.channels_last)
    if args.compile:
        t0 = time.perf_counter()
        model = torch.compile(model)
    augment = SimCLRAugment().to(device)
    step = make_step(model, device, amp=gpu, channels_last=True, fused=gpu)
    data = images.to(device)  # resident on the device, as the uint8 split is 150 MB
    n = len(data) // args.batch

    state = {"i": 0}

    def next_batch() -> torch.Tensor:
        i = state["i"] = (state["i"] + 1) % n
        return data[i * args.batch : (i + 1) * args.batch]

    def augment_only() -> None:
        x = next_batch()
        torch.cat([augment(x), augment(x)])

    views = torch.cat([augment(next_batch()), augment(next_batch())])
    if args.compile:
        step(views)
        sync(device)
        compile_s = time.perf_counter() - t0
    full = timed(
        lambda: step(torch.cat([augment(x := next_batch()), augment(x)])), device, args.steps, args.warmup, args.repeats
    )
    aug = timed(augment_only, device, args.steps, args.warmup, args.repeats)
    model_only = timed(lambda: step(views), device, args.steps, args.warmup, args.repeats)
    out = summary(full, args.batch)
    out["augment_s_per_step"] = statistics.median(aug)
    out["model_s_per_step"] = statistics.median(model_only)
    out["augment_fraction"] = out["augment_s_per_step"] / out["s_per_step"]
    if args.compile:
        out["compile_s"] = compile_s
    return out


def bench_baseline(args: argparse.Namespace, device: torch.device, images: torch.Tensor) -> dict:
    model = Model(args.arch, args.width).to(device)
    step = make_step(model, device, amp=False, channels_last=False, fused=False)
    loader = DataLoader(
        PerImageViews(images),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    batches = iter(())

    def one() -> None:
        nonlocal batches
        try:
            v1, v2 = next(batches)
        except StopIteration:
            batches = iter(loader)
            v1, v2 = next(batches)
        step(torch.cat([v1, v2]).to(device, non_blocking=True))

    return summary(timed(one, device, args.steps, args.warmup, args.repeats), args.batch)


def summary(seconds: list[float], batch: int) -> dict:
    s = statistics.median(seconds)
    return {
        "s_per_step": s,
        "views_per_s": 2 * batch / s,
        "s_per_epoch": VIEWS_PER_EPOCH * s / (2 * batch),
        "repeats_s_per_step": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=512, help="images per step (2x views)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="baseline loader workers")
    p.add_argument("--images", type=int, default=10_000, help="random uint8 images to draw batches from")
    p.add_argument("--compile", action="store_true", help="torch.compile the project's model (reports compile time)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--out", default="throughput.json")
    args = p.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "args": vars(args),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result["project"] = bench_project(args, device, images)
    if device.type == "cuda":
        result["project"]["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    if not args.skip_baseline:
        result["baseline"] = bench_baseline(args, device, images)
        if device.type == "cuda":
            result["baseline"]["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        result["speedup"] = result["project"]["views_per_s"] / result["baseline"]["views_per_s"]
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{result['device']}, torch {result['torch']}, {args.arch} width {args.width}, batch {args.batch}")
    print("| path | views/s | s/epoch | s/step | augmentation share |")
    print("|---|---|---|---|---|")
    pr = result["project"]
    print(
        f"| project | {pr['views_per_s']:.0f} | {pr['s_per_epoch']:.2f} | {pr['s_per_step']:.4f} "
        f"| {100 * pr['augment_fraction']:.1f}% |"
    )
    if "baseline" in result:
        b = result["baseline"]
        print(
            f"| baseline ({args.workers} workers) | {b['views_per_s']:.0f} | {b['s_per_epoch']:.2f} "
            f"| {b['s_per_step']:.4f} | - |"
        )
        print(f"speed-up project / baseline: {result['speedup']:.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
