"""The on-device views are distributed as the torchvision reference's views.

Each pipeline makes one view of every image several times. Per view a set of statistics is measured:
colour means, contrast, chroma, whether it is gray, sharpness (how far the crop zooms), flip, and how
far its brightness, contrast, chroma and hue moved from its image's. The mean of each statistic is
compared between the two pipelines as a z-score (difference over its standard error). Parity of
learning (benchmarks/parity.py) takes most of an hour on 2 cores; this check takes seconds and names
the statistic that moved. A second test puts one setting of the device pipeline off its reference
value at a time and checks that the comparison notices it, so the first test can fail.

On 20,000 views of real CIFAR-10 images no statistic reaches z 3. The largest is PIL's: it rounds every
colour op down to uint8, so the reference's views are about 1/255 darker (z 2.2 to 2.8 on the channel
means). A device crop whose taps read pixels outside its box makes views 1.3% sharper (z 2.4).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from simclr.views.augment import SimCLRAugment, build_augment
from simclr.views.torchvision_reference import torchvision_pipeline
from tests.helpers import default_augmentation

Z_MAX = 5.0  # a statistic differs when its means are this many standard errors apart
IMAGES, REPEATS = 1000, 4


def textured_images(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, 32, 32): one saturated random colour per image, shaded by a smooth random field (4 x 4
    grid, bicubic), plus a weaker random colour field and pixel noise. Every image has edges and a
    dominant hue that a crop keeps, so a hue shift shows in the view's mean colour."""
    g = torch.Generator().manual_seed(seed)
    smooth = lambda c: F.interpolate(torch.rand(n, c, 4, 4, generator=g), size=32, mode="bicubic")  # noqa: E731
    colour = torch.rand(n, 3, 1, 1, generator=g)
    lo, hi = colour.amin(1, keepdim=True), colour.amax(1, keepdim=True)
    colour = 0.1 + 0.8 * (colour - lo) / (hi - lo)  # the full chroma its hue allows, inside [0.1, 0.9]
    x = colour * (0.4 + 0.6 * smooth(1)) + 0.15 * smooth(3) + 0.03 * torch.randn(n, 3, 32, 32, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _opponent_angle(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N,) angle in turns of the mean opponent colour (a hue of the whole image)."""
    r, g, b = x.unbind(1)
    a = (r - (g + b) / 2).mean(dim=(1, 2))
    c = (math.sqrt(3) / 2 * (g - b)).mean(dim=(1, 2))
    return torch.atan2(c, a) / (2 * math.pi)


def view_statistics(views: torch.Tensor, originals: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view statistics, each (N,): views normalised float (N, 3, H, W), originals uint8 of the same images.

    The colour-change statistics are NaN on gray views, which have no hue or chroma to compare.
    """
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    v, o = views * std + mean, originals / 255.0  # [0, 1]
    chroma, chroma_o = (v.amax(1) - v.amin(1)).mean(dim=(1, 2)), (o.amax(1) - o.amin(1)).mean(dim=(1, 2))
    luma, luma_o = v.mean(1), o.mean(1)  # (N, H, W) mean of the channels
    gray = (v.amax(1) - v.amin(1)).amax(dim=(1, 2)) < 2 / 255
    # How far a view's brightness, contrast and saturation moved from its image's, squared: the spread
    # of the jitter factors shows here, where the means of the views alone would not show it.
    change = lambda a, b: (a / b.clamp_min(1e-3) - 1).square()  # noqa: E731
    turn = _opponent_angle(v) - _opponent_angle(o)
    turn = turn - turn.round()  # wrapped to [-1/2, 1/2]
    half = v.shape[-1] // 2
    left_right = lambda y: (y[..., :half].mean(dim=(1, 2, 3)) - y[..., half:].mean(dim=(1, 2, 3))).sign()  # noqa: E731
    nan = torch.tensor(math.nan)
    return {
        **{f"mean_{c}": v[:, i].mean(dim=(1, 2)) for i, c in enumerate("rgb")},
        "contrast": luma.std(dim=(1, 2)),
        "chroma": chroma,
        "gray": gray.float(),
        "sharpness": (v[..., 1:] - v[..., :-1]).abs().mean(dim=(1, 2, 3)),
        "flip_agreement": left_right(v) * left_right(o),
        "brightness_change": change(luma.mean(dim=(1, 2)), luma_o.mean(dim=(1, 2))),
        "contrast_change": change(luma.std(dim=(1, 2)), luma_o.std(dim=(1, 2))),
        "chroma_change": torch.where(gray, nan, change(chroma, chroma_o)),
        "hue_shift_sq": torch.where(gray, nan, turn.square()),
    }


def z_scores(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    """Difference of the means of each statistic over its standard error (Welch), NaNs left out."""
    z = {}
    for k in a:
        x, y = a[k][~a[k].isnan()], b[k][~b[k].isnan()]
        z[k] = float((x.mean() - y.mean()) / (x.var() / len(x) + y.var() / len(y)).sqrt())
    return z


def device_views(augment: SimCLRAugment, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([augment(images, g) for _ in range(REPEATS)])


def torchvision_views(aug: dict, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    transform = torchvision_pipeline(aug)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    torch.manual_seed(seed)  # torchvision's transforms draw from the global generator
    return torch.cat([torch.stack([transform(p) for p in pil]) for _ in range(REPEATS)])


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    images = textured_images(IMAGES)
    return images, view_statistics(torchvision_views(default_augmentation(), images), images.repeat(REPEATS, 1, 1, 1))


def test_device_views_are_distributed_as_torchvisions(reference: tuple) -> None:
    images, expected = reference
    got = view_statistics(device_views(build_augment(default_augmentation()), images), images.repeat(REPEATS, 1, 1, 1))
    z = z_scores(got, expected)
    assert all(abs(v) < Z_MAX for v in z.values()), {k: round(v, 1) for k, v in z.items()}


@pytest.mark.parametrize(
    "setting, moved",
    [
        ({"crop_scale": [0.3, 1.0]}, "sharpness"),
        ({"crop_ratio": [0.5, 2.0]}, "sharpness"),
        ({"flip_p": 0.0}, "flip_agreement"),
        ({"jitter_p": 0.5}, "chroma_change"),
        ({"brightness": 0.6}, "brightness_change"),
        ({"contrast": 0.8}, "contrast_change"),
        ({"saturation": 0.6}, "chroma_change"),
        ({"hue": 0.15}, "hue_shift_sq"),
        ({"grayscale_p": 0.3}, "gray"),
    ],
)
def test_the_comparison_notices_one_wrong_setting(reference: tuple, setting: dict, moved: str) -> None:
    """The device pipeline with one setting off its reference value: that statistic moves past Z_MAX."""
    images, expected = reference
    got = view_statistics(
        device_views(build_augment(default_augmentation(**setting)), images), images.repeat(REPEATS, 1, 1, 1)
    )
    z = z_scores(got, expected)
    assert abs(z[moved]) >= Z_MAX, {k: round(v, 1) for k, v in z.items()}
