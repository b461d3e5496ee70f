"""Images per second of feature extraction (the kNN monitor's and the probe's) at several evaluation batches.

What `data.eval_batch_size` buys on this machine: a frozen, randomly initialised encoder of each width
extracts features of the same uint8 images (normalised on the fly, as the probe's cache does) in batches of
each size, through `simclr.evaluation.features.extract_features`, the function both use. Each size is warmed
up on two batches of its own shape first (oneDNN builds its kernels per shape). The features must not depend
on the batch: each row also gives the largest difference from the first size's features.

    python benchmarks/eval_batch.py --widths 16 32 --batches 1024 512 256 128 64 --out eval_batch.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.throughput_rows import autocast
from simclr.evaluation.features import extract_features
from simclr.models.nets import build_encoder
from simclr.views.augment import SimCLRAugment


def measure(
    width: int, batches: list[int], images: torch.Tensor, bf16: bool, arch: str = "resnet_tiny"
) -> list[dict[str, float | int]]:
    """One row per batch size: images/s and the largest |feature difference| from the first size's features."""
    torch.manual_seed(0)
    encoder = build_encoder(arch=arch, width=width).eval()
    normalize = SimCLRAugment().normalize
    cpu, dtype = torch.device("cpu"), torch.bfloat16 if bf16 else None

    def features(data: torch.Tensor, batch: int) -> torch.Tensor:
        return extract_features(encoder, data, normalize=normalize, context=autocast(cpu, dtype), batch_size=batch)

    rows, reference = [], None
    for batch in batches:
        features(images[: 2 * batch], batch)  # warm-up at this batch's shape
        start = time.perf_counter()
        feats = features(images, batch)
        seconds = time.perf_counter() - start
        reference = feats if reference is None else reference
        rows.append(
            {
                "width": width,
                "eval_batch": batch,
                "images_per_s": len(images) / seconds,
                "max_abs_diff": float((feats - reference).abs().max()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, float | int]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="resnet_tiny widths")
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 512, 256, 128, 64])
    parser.add_argument("--images", type=int, default=8192, help="32 x 32 images per measurement")
    parser.add_argument("--float32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--out", type=Path, help="JSON file for the rows")
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    rows = [row for width in args.widths for row in measure(width, args.batches, images, bf16=not args.float32)]
    for row in rows:
        print(
            f"width {row['width']:>3} eval batch {row['eval_batch']:>5}: {row['images_per_s']:>8,.0f} images/s"
            f" (max |feature difference| {row['max_abs_diff']:.2g})"
        )
    if args.out:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "bf16": not args.float32}
        args.out.write_text(json.dumps({**meta, "images": args.images, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
