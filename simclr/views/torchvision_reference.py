"""The reference view pipeline: one SimCLR view of a PIL image made by torchvision transforms.

This is how the official SimCLR code's PyTorch ports and the public SSL libraries make SimCLR's views,
kept as `augmentation.backend=torchvision` so that any run can be checked against the on-device
pipeline (`simclr.views.augment.SimCLRAugment`), which reads the same `augmentation.*` keys, and a
published number can be reproduced the public way. `simclr.data.per_image_batches` applies it in CPU
workers.
"""

from __future__ import annotations

from typing import Any

from torchvision import transforms as T

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD


def torchvision_pipeline(aug: dict[str, Any], image_size: int = 32) -> T.Compose:
    """One SimCLR view of a PIL image as the public code makes it: crop, flip, jitter, grayscale, blur.

    `aug` is the `augmentation` config section. ColorJitter applies its four ops in a random order
    per image, as `SimCLRAugment` does. Returns float32 (3, S, S), S = `aug["size"]` or `image_size`,
    normalised with the CIFAR-10 mean and std.
    """
    size = aug.get("size") or image_size
    steps: list[Any] = [
        T.RandomResizedCrop(size, scale=tuple(aug["crop_scale"]), ratio=tuple(aug["crop_ratio"])),
        T.RandomHorizontalFlip(aug["flip_p"]),
        T.RandomApply(
            [T.ColorJitter(aug["brightness"], aug["contrast"], aug["saturation"], aug["hue"])], p=aug["jitter_p"]
        ),
        T.RandomGrayscale(p=aug["grayscale_p"]),
    ]
    if aug.get("blur_p", 0.0) > 0:
        blur = T.GaussianBlur(aug["blur_kernel_size"], sigma=tuple(aug["blur_sigma"]))
        steps.append(T.RandomApply([blur], p=aug["blur_p"]))
    steps += [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    return T.Compose(steps)
