"""SimCLR augmentations computed on the device, batched, with per-sample random parameters.

The input is a uint8 batch (B, 3, H, W) already on the module's device; the output is a float32
normalised batch of the same shape. Every random quantity is drawn per sample, so a batch of B images
gets B different crops, flips, jitters, and so on, as torchvision's per-image transforms would give.

On a GPU a 32 x 32 batch is so small that the number of kernels launched sets the time, and any op whose
result the host must read stalls the CPU. So the view is built from whole-batch ops only, with no
data-dependent indexing or Python branching:

* the parameters are one `torch.rand` per quantity, scaled and thresholded as stacked rows;
* crop and flip are one `grid_sample`, its affine maps built in one `stack` and its sample positions
  clamped to each box, so that no tap reads outside it (`simclr.views.crop`);
* colour jitter is computed for every sample and kept, with `torch.where`, where `jitter` was drawn;
  its per-sample random order runs on the fixed schedule of slots in `simclr.views.colour`;
* normalisation is one `addcmul` with precomputed 1/std and -mean/std.

One view of a batch, whatever its size, dispatches 126 ops (46 of them drawing the parameters), none of
them synchronising; 135 with blur (`simclr.training.profiling.count_ops`). Selecting the jittered samples
with `nonzero` and building the HSV sector table on every call instead measured 474 ops (488 with blur),
5 of them synchronising.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from simclr.errors import ConfigError
from simclr.views.colour import (
    BLEND_KINDS,
    GRAY_WEIGHTS,
    HUE_OFFSETS,
    IDLE_SLOT,
    JITTER_SLOTS,
    _luma,
    gaussian_blur,
    jitter_in_slots,
    jitter_slots,
)
from simclr.views.crop import crop_and_flip, sample_crops

# The rows of the stacked per-sample draws, in the order they are drawn: after the crops, and with the
# jitter order drawn between hue and grayscale.
_DRAWS = ("flip", "jitter", "brightness", "contrast", "saturation", "hue", "grayscale", "blur", "sigma")


@dataclass
class AugmentParams:
    """Per-sample parameters of one augmentation draw (B = batch size).

    crop: (B, 4) float, (x0, y0, w, h) in pixels of the input image.
    flip: (B,) bool. jitter: (B,) bool, whether colour jitter is applied.
    brightness, contrast, saturation: (B,) multiplicative factors. hue: (B,) shift in turns.
    jitter_order: (B, 4) long, a permutation of (brightness, contrast, saturation, hue).
    grayscale, blur: (B,) bool. sigma: (B,) blur standard deviation in pixels.
    """

    crop: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    jitter_order: torch.Tensor
    grayscale: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    a, b = float(value[0]), float(value[1])
    if not (lo <= a <= b <= hi):
        raise ConfigError(f"augmentation.{name}={[a, b]} must satisfy {lo} <= min <= max <= {hi}")
    return a, b


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"augmentation.{name}={p} is a probability and must lie in [0, 1]")
    return float(p)


def _column(values: list[float] | tuple[float, ...], *shape: int) -> torch.Tensor:
    """A float32 constant for a buffer; each value is rounded once from its Python (double) value."""
    return torch.tensor(values, dtype=torch.float32).view(*shape)


class SimCLRAugment(nn.Module):
    """Random resized crop, flip, colour jitter, grayscale, optional blur and normalisation.

    Defaults are SimCLR's CIFAR-10 setting: crop scale (0.08, 1), ratio (3/4, 4/3), flip p=0.5,
    jitter strength 0.5 = (0.4, 0.4, 0.4, 0.1) applied with p=0.8 in a random order, grayscale p=0.2,
    no blur. `forward` returns one view; call it twice for the two views of SimCLR. `size` is the side of
    the views in pixels (default: the image's); smaller views make a step cheaper, while features for
    evaluation are still taken from whole images at full size.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        blur_kernel_size: int = 3,
        size: int | None = None,
        mean: tuple[float, float, float] = CIFAR10_MEAN,
        std: tuple[float, float, float] = CIFAR10_STD,
    ) -> None:
        super().__init__()
        self.crop_scale = _check_range("crop_scale", crop_scale, 1e-6, 1.0)
        if not float(crop_scale[0]) > 0:
            raise ConfigError(f"augmentation.crop_scale={list(crop_scale)} must lie in (0, 1]")
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, 1e-3, 1e3)
        self.flip_p = _check_probability("flip_p", flip_p)
        for name, value, hi in [
            ("brightness", brightness, math.inf),
            ("contrast", contrast, math.inf),
            ("saturation", saturation, math.inf),
            ("hue", hue, 0.5),
        ]:
            if not 0.0 <= value <= hi:
                raise ConfigError(f"augmentation.{name}={value} must lie in [0, {hi}]")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.jitter_p = _check_probability("jitter_p", jitter_p)
        self.grayscale_p = _check_probability("grayscale_p", grayscale_p)
        self.blur_p = _check_probability("blur_p", blur_p)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma, 1e-3, 1e3)
        if blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            raise ConfigError(f"augmentation.blur_kernel_size={blur_kernel_size} must be odd and positive")
        self.blur_kernel_size = blur_kernel_size
        if size is not None and not (isinstance(size, int) and size > 0):
            raise ConfigError(f"augmentation.size={size} must be a positive number of pixels, or null (the image's)")
        self.size = size
        buffer = lambda name, value: self.register_buffer(name, value, persistent=False)  # noqa: E731
        buffer("mean", _column(mean, 1, 3, 1, 1))
        buffer("std", _column(std, 1, 3, 1, 1))
        buffer("_norm_scale", 1.0 / self.std)
        buffer("_norm_shift", -self.mean / self.std)
        self._register_step_constants(self.mean.device)

    def _register_step_constants(self, device: torch.device) -> None:
        """The constants of the step, as non-persistent float32 buffers on `device`.

        Buffers follow `.to(device)` and stay out of checkpoints, and the step never builds a tensor
        from host data. mean, std and the normalisation constants are plain buffers and take the module's
        dtype under a cast; these are rebuilt after any cast, so the draws and the colour ops stay float32.
        """

        def buffer(name: str, values: list[float] | tuple[float, ...], *shape: int) -> None:
            self.register_buffer(name, _column(values, *shape).to(device), persistent=False)

        buffer("_luma_weights", GRAY_WEIGHTS, 1, 3, 1, 1)
        buffer("_hue_offsets", HUE_OFFSETS, 1, 3, 1, 1)
        # Uniform draws become lo + span * u, Bernoulli draws u < p, row by row as in _DRAWS; the span
        # hi - lo is taken in double and rounded once, as in `lo + (hi - lo) * u` with Python floats.
        b, c, s, h = self.brightness, self.contrast, self.saturation, self.hue
        ranges = {
            "brightness": (max(0.0, 1 - b), 1 + b),
            "contrast": (max(0.0, 1 - c), 1 + c),
            "saturation": (max(0.0, 1 - s), 1 + s),
            "hue": (-h, h),
            "sigma": self.blur_sigma,
        }
        probs = {"flip": self.flip_p, "jitter": self.jitter_p, "grayscale": self.grayscale_p, "blur": self.blur_p}
        lo_hi = [ranges.get(k, (0.0, 1.0)) for k in _DRAWS]
        buffer("_draw_lo", [lo for lo, _ in lo_hi], -1, 1)
        buffer("_draw_span", [hi - lo for lo, hi in lo_hi], -1, 1)
        buffer("_draw_p", [probs.get(k, 0.0) for k in _DRAWS], -1, 1)
        log_r = (math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]))
        buffer("_crop_lo", [self.crop_scale[0], log_r[0]], 2, 1, 1)
        buffer("_crop_span", [self.crop_scale[1] - self.crop_scale[0], log_r[1] - log_r[0]], 2, 1, 1)
        buffer("_blend_kinds", [v for kind in BLEND_KINDS for v in kind], 1, 3, 2)
        buffer("_idle_slots", list(IDLE_SLOT) * JITTER_SLOTS, 1, JITTER_SLOTS, 3)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> SimCLRAugment:
        """`.to()`, `.cuda()`, `.half()`, ...: moves every buffer, then rebuilds the step's constants
        in float32 on the new device (a cast would otherwise round them, or break `scatter`)."""
        super()._apply(fn, recurse)
        self._register_step_constants(self.mean.device)
        return self

    # ---- parameters -------------------------------------------------------------------------
    def sample_params(
        self, batch: int, height: int, width: int, device: torch.device, gen: torch.Generator | None = None
    ) -> AugmentParams:
        """Draws one set of parameters per sample (see `AugmentParams` for shapes and units).

        The draws are those of one `torch.rand` call per quantity, in a fixed order (crops, then the
        rows of `_DRAWS` with the jitter order after hue), so a seeded generator gives a fixed stream;
        their scaling and thresholds are applied to all rows at once.
        """
        crop = sample_crops(batch, height, width, self._crop_lo, self._crop_span, self.crop_ratio, device, gen)
        rand = lambda *shape: torch.rand(*shape, device=device, generator=gen)  # noqa: E731
        u = [rand(batch) for _ in _DRAWS[:6]]
        jitter_order = rand(batch, 4).argsort(dim=1)
        u = torch.stack(u + [rand(batch) for _ in _DRAWS[6:]])  # (len(_DRAWS), B)
        values = u * self._draw_span.to(device) + self._draw_lo.to(device)
        flags = u < self._draw_p.to(device)
        row = {name: i for i, name in enumerate(_DRAWS)}
        return AugmentParams(
            crop=crop,
            jitter_order=jitter_order,
            **{k: flags[row[k]] for k in ("flip", "jitter", "grayscale", "blur")},
            **{k: values[row[k]] for k in ("brightness", "contrast", "saturation", "hue", "sigma")},
        )

    # ---- application ------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float32, no augmentation: the evaluation transform."""
        x = images / 255.0 if images.dtype == torch.uint8 else images.float() / 255.0
        return torch.addcmul(self._norm_shift, x, self._norm_scale)

    def forward(self, images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> one augmented, normalised float32 view (B, 3, S, S), S = `size` (or H, W)."""
        b, _, h, w = images.shape
        return self.apply(images, self.sample_params(b, h, w, images.device, gen))

    def apply(self, images: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Applies given parameters: uint8 or [0, 1] float (B, 3, H, W) -> normalised float32 (B, 3, S, S).

        Every step is computed for the whole batch and kept per sample with `torch.where`, so the
        host never reads a device value and `torch.compile(fullgraph=True)` traces it whole.
        """
        per_sample = lambda flag: flag.view(-1, 1, 1, 1)  # noqa: E731
        x = images / 255.0 if images.dtype == torch.uint8 else images.float()
        x = crop_and_flip(x, p.crop, p.flip, self.size)
        x = torch.where(per_sample(p.jitter), self._color_jitter(x, p), x)
        x = torch.where(per_sample(p.grayscale), _luma(x, self._luma_weights), x)
        if self.blur_p > 0:
            x = torch.where(per_sample(p.blur), gaussian_blur(x, p.sigma, self.blur_kernel_size), x)
        return torch.addcmul(self._norm_shift, x, self._norm_scale)

    def _color_jitter(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Brightness, contrast, saturation and hue in each sample's order, for every sample.

        x: (B, 3, H, W) in [0, 1]. The schedule of seven slots is described in `simclr.views.colour`.
        """
        factors = torch.stack([p.brightness, p.contrast, p.saturation], dim=1)  # (B, 3)
        slots = jitter_slots(p.jitter_order, factors, self._blend_kinds, self._idle_slots)  # (B, 7, 3)
        hue_k0 = torch.add(self._hue_offsets, p.hue.view(-1, 1, 1, 1), alpha=6.0)  # (B, 3, 1, 1)
        return jitter_in_slots(x, slots, self._luma_weights, hue_k0)


def build_augment(cfg: dict) -> SimCLRAugment:
    """SimCLRAugment from an `augmentation` config mapping (lists become tuples)."""
    pipeline_keys = ("backend", "num_workers")  # which pipeline makes the views, not how: read elsewhere
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(cfg).items()}
    kwargs = {k: v for k, v in kwargs.items() if k not in pipeline_keys}
    return SimCLRAugment(**kwargs)
