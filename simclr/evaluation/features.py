"""Backbone features of a set of images: the one function the kNN monitor, the probe's cache, the
figures and the notebook all use, so that they all see the same numbers for the same encoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    data: torch.Tensor | Iterable[Any],
    device: torch.device | str | None = None,
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    context: contextlib.AbstractContextManager | None = None,
    batch_size: int = 1024,
    flip_average: bool = False,
) -> torch.Tensor:
    """Features of every image in `data`, in the order given: float32 (N, D) on `device`.

    Args:
        encoder: images (B, 3, H, W) -> features (B, D); a SimCLRModule (its forward gives the
            backbone features, before the head) or a bare encoder. It runs in eval mode (BatchNorm
            uses its running statistics, dropout is off) under no_grad; every submodule's mode is
            restored afterwards, so a probe's frozen encoder stays in eval mode and a training module
            goes back to training.
        data: uint8 or float images (N, 3, H, W), cut into batches of `batch_size`; or an iterable of
            batches, each a tensor of images or a tuple whose first element is the images (the
            (images, labels, indices) batches of `CIFAR10DataModule`'s loaders).
        device: where the encoder runs and the features stay (default: the encoder's device).
        normalize: applied to each batch on the device (e.g. `augment.normalize` for uint8 images);
            None when the images are normalised already.
        context: entered once around the whole pass, e.g. the Trainer's
            `precision_plugin.forward_context()` (autocast under bf16-mixed); None: full precision, or
            whatever context the caller is already in.
        batch_size: images per encoder pass when `data` is a tensor.
        flip_average: each image's features are the mean of its own and its mirror image's (flipped
            left to right): a fixed feature map that two encoder passes per image buy, and one that does
            not change when an image is mirrored.
    """
    if device is None:
        param = next(iter(encoder.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    batches = data.split(batch_size) if isinstance(data, torch.Tensor) else data
    modes = [(m, m.training) for m in encoder.modules()] if isinstance(encoder, nn.Module) else []
    if isinstance(encoder, nn.Module):
        encoder.eval()
    out: list[torch.Tensor] = []
    try:
        with context if context is not None else contextlib.nullcontext():
            for batch in batches:
                images = batch if isinstance(batch, torch.Tensor) else batch[0]
                images = images.to(device, non_blocking=True)
                if normalize is not None:
                    images = normalize(images)
                feats = encoder(images).float()
                if flip_average:
                    feats = (feats + encoder(images.flip(-1)).float()) / 2
                out.append(feats)
    finally:
        for module, training in modes:
            module.training = training
    if not out:
        dim = getattr(encoder, "feature_dim", None) or getattr(getattr(encoder, "encoder", None), "feature_dim", 0)
        return torch.zeros(0, dim, device=device)
    return torch.cat(out)
