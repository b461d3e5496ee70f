"""The validation split: labelled training images held out for selection, stratified and seeded.

Selection (sweeps, recipe tuning, the value returned to Hydra) uses these images, never the test split.
The split is a function of (labels, val_size, seed) alone, so train_ssl.py and train_linear.py hold out
the same images for the same seed on any device or number of processes; its record (sizes, images per
class, a hash of the indices) goes into checkpoints and results.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from simclr.errors import ConfigError


@dataclass(frozen=True)
class ValidationSplit:
    """The training split cut in two: `train` (the rest: kNN bank, probe training) and `val` (held out).

    Both are sorted int64 indices into the training split; `record()` describes the split for
    results.json and checkpoints (sizes, images per class, a hash of the validation indices).
    """

    train: torch.Tensor
    val: torch.Tensor
    seed: int
    val_per_class: list[int] = field(default_factory=list)

    @property
    def val_size(self) -> int:
        return len(self.val)

    def record(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.val.numpy().astype("<i8").tobytes()).hexdigest()[:16]
        return {
            "val_size": self.val_size,
            "train_size": len(self.train),
            "seed": self.seed,
            "val_per_class": list(self.val_per_class),
            "val_indices_sha256": digest,
            "selection": "val" if self.val_size else "test",
        }


def validation_split(labels: torch.Tensor, val_size: int, seed: int, num_classes: int | None = None) -> ValidationSplit:
    """Holds `val_size` images of the labelled training split out for validation, stratified by class.

    Every class gives val_size // num_classes images; when val_size is not a multiple of num_classes,
    the remaining val_size % num_classes images come one each from that many classes drawn at random.
    Within a class the images are drawn at random. All draws come from one CPU generator seeded by
    `seed` alone, so the split is a deterministic function of (seed, val_size, labels): the same in
    `train_ssl.py` and `train_linear.py`, on any device and any number of processes. val_size=0 gives
    no validation set (the rest is the whole split).

    Raises ConfigError (naming data.val_size) when val_size is negative, leaves no training image, is
    below num_classes (a class without validation images) or takes every image of some class.
    `num_classes` defaults to the largest label + 1.
    """
    n = len(labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if n else 0
    if not isinstance(val_size, int) or isinstance(val_size, bool) or val_size < 0:
        raise ConfigError(f"data.val_size={val_size!r} must be an integer >= 0 (0: no validation split)")
    if val_size == 0:
        return ValidationSplit(torch.arange(n), torch.zeros(0, dtype=torch.long), seed, [0] * num_classes)
    if val_size >= n:
        raise ConfigError(
            f"data.val_size={val_size} holds out all {n} training images; it must be smaller than {n} "
            f"(the default 5000 suits the 50,000 CIFAR-10 images), or 0 to monitor on the test split"
        )
    if val_size < num_classes:
        raise ConfigError(
            f"data.val_size={val_size} leaves classes without validation images: the split is stratified, "
            f"so it needs at least one image of each of the {num_classes} classes (data.val_size>={num_classes}), "
            f"or 0 for no validation split"
        )
    counts = torch.bincount(labels, minlength=num_classes)
    gen = torch.Generator().manual_seed(_split_seed(seed))
    quota = torch.full((num_classes,), val_size // num_classes, dtype=torch.long)
    quota[torch.randperm(num_classes, generator=gen)[: val_size % num_classes]] += 1
    short = [c for c in range(num_classes) if quota[c] >= counts[c]]
    if short:
        c = short[0]
        largest = num_classes * (int(counts.min()) - 1)
        raise ConfigError(
            f"data.val_size={val_size} leaves class {c} without training images (it has {int(counts[c])} "
            f"images and {int(quota[c])} would be held out); use data.val_size<={largest}, or 0"
        )
    val = []
    for c in range(num_classes):
        members = (labels == c).nonzero().squeeze(1)
        val.append(members[torch.randperm(len(members), generator=gen)[: int(quota[c])]])
    val_idx = torch.cat(val).sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    return ValidationSplit(keep.nonzero().squeeze(1), val_idx, seed, quota.tolist())


def _split_seed(seed: int) -> int:
    """The split's generator seed: a function of the run's seed, apart from the epochs' permutations."""
    return (seed * 0xD1B54A32D192ED03 + 0x2545F4914F6CDD1D) % (2**63 - 1)
