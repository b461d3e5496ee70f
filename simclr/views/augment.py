"""SimCLR augmentations computed on the device, batched, with per-sample random parameters.

The input is a uint8 batch (B, 3, H, W) already on the module's device; the output is a float32
normalised batch of the same shape. Every random quantity is drawn per sample, so a batch of B images
gets B different crops, flips, jitters, and so on, as torchvision's per-image transforms would give.

On a GPU a 32 x 32 batch is so small that the number of kernels launched sets the time, and any op whose
result the host must read stalls the CPU. So the view is built from whole-batch ops only, with no
data-dependent indexing or Python branching:

* crop and flip are one `grid_sample`, its affine maps built in one `stack` and its sample positions
  clamped to each box, so that no tap reads outside it;
* colour jitter is computed for every sample and kept, with `torch.where`, where `jitter` was drawn;
* the per-sample random order of brightness, contrast, saturation and hue runs on a fixed schedule of
  seven slots, blend x3, hue, blend x3. A sample's ops that come before its hue go in the blend slots
  just before the hue slot, those after it in the slots just after; each blend slot computes
  clamp(lerp(other, x, f)) with a per-sample factor f and other = 0 (brightness), the mean luma
  (contrast) or the luma image (saturation), and a slot a sample does not use gets f = 1, which
  leaves it exactly unchanged. The slot table is one `scatter` of the inverse permutation;
* hue is one branchless HSV rotation, out_c = v - delta * clamp(min(k_c, 4 - k_c), 0, 1);
* normalisation is one `addcmul` with precomputed 1/std and -mean/std.

One view of a batch, whatever its size, dispatches 126 ops (46 of them drawing the parameters), none of
them synchronising; 135 with blur. The version this replaced, which picked the jittered samples out with
`nonzero` and built the HSV sector table on every call, took 474 ops (488 with blur) and 5 synchronising
ones (`simclr.training.profiling.count_ops`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from simclr.errors import ConfigError

_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma (torchvision rounds red to 0.2989)
# Offsets n_c of the branchless HSV -> RGB map for (r, g, b): k_c = (n_c + 6 h) mod 6.
_HUE_OFFSETS = (5.0, 3.0, 1.0)
# The jitter schedule: three blend slots, the hue slot, three blend slots.
_HUE_SLOT = 3
_SLOTS = 7
# The chroma is floored at this where it divides, so a gray pixel (chroma 0) gets a finite, unused hue.
_TINY = 1e-12
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


def _pair(a: float, b: float, device: torch.device) -> torch.Tensor:
    """(2,) float32 [a, b] made on the device without a host-to-device copy (linspace ends are exact)."""
    return torch.linspace(a, b, 2, device=device)


class SimCLRAugment(nn.Module):
    """Random resized crop, flip, colour jitter, grayscale, optional blur and normalisation.

    Defaults are SimCLR's CIFAR-10 setting: crop scale (0.08, 1), ratio (3/4, 4/3), flip p=0.5,
    jitter strength 0.5 = (0.4, 0.4, 0.4, 0.1) applied with p=0.8 in a random order, grayscale p=0.2,
    no blur. `forward` returns one view; call it twice for the two views of SimCLR.
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
        buffer = lambda name, value: self.register_buffer(name, value, persistent=False)  # noqa: E731
        buffer("mean", _column(mean, 1, 3, 1, 1))
        buffer("std", _column(std, 1, 3, 1, 1))
        buffer("_norm_scale", 1.0 / self.std)
        buffer("_norm_shift", -self.mean / self.std)
        self._register_step_constants(self.mean.device)

    def _register_step_constants(self, device: torch.device) -> None:
        """The constants of the step, as non-persistent float32 buffers on `device`.

        Buffers follow `.to(device)` and stay out of checkpoints, and the step never builds a tensor
        from host data. mean, std and the normalisation follow the module's dtype, as they always
        have; these are rebuilt exactly after any cast, so the draws and the colour ops stay float32.
        """

        def buffer(name: str, values: list[float] | tuple[float, ...], *shape: int) -> None:
            self.register_buffer(name, _column(values, *shape).to(device), persistent=False)

        buffer("_luma_weights", _GRAY_WEIGHTS, 1, 3, 1, 1)
        buffer("_hue_offsets", _HUE_OFFSETS, 1, 3, 1, 1)
        # Uniform draws become lo + span * u, Bernoulli draws u < p, row by row as in _DRAWS; the
        # span is taken in double before rounding, as `lo + (hi - lo) * u` with Python floats was.
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
        # Jitter schedule: whether a blend uses the luma and whether it takes its mean, for brightness,
        # contrast and saturation; and a slot's (factor, 0, 0) filling the slots a sample leaves unused,
        # factor 1 being the identity.
        buffer("_blend_kind", [0.0, 0.0, 1.0, 1.0, 1.0, 0.0], 1, 3, 2)
        buffer("_idle_slot", [1.0, 0.0, 0.0] * _SLOTS, 1, _SLOTS, 3)

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
        crop = self._sample_crops(batch, height, width, device, gen)
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

    def _sample_crops(
        self, batch: int, height: int, width: int, device: torch.device, gen: torch.Generator | None, tries: int = 10
    ) -> torch.Tensor:
        """torchvision's RandomResizedCrop.get_params, vectorised: (B, 4) boxes (x0, y0, w, h) in pixels.

        Each sample takes the first of `tries` draws whose box fits the image; a sample with none falls
        back to the central crop clamped to the ratio range, exactly as torchvision does. Widths and
        heights are handled as one (2, ...) tensor against the image size (W, H).
        """
        rand = lambda n: torch.rand(n, device=device, generator=gen)  # noqa: E731
        u = torch.stack([rand(batch * tries), rand(batch * tries)]).view(2, batch, tries)
        scale, log_ratio = (u * self._crop_span.to(device) + self._crop_lo.to(device)).unbind(0)
        ratio = torch.exp(log_ratio)
        area = height * width * scale
        wh = torch.stack([area * ratio, area / ratio]).sqrt().round()  # (2, B, tries)
        size = _pair(width, height, device).view(2, 1, 1)
        ok = ((wh > 0) & (wh <= size)).all(0)
        found = ok.any(1)
        first = ok.view(torch.uint8).argmax(1, keepdim=True)  # the first fitting try (argmax takes the first)
        wh = wh.gather(2, first.expand(2, batch, 1)).squeeze(2)  # (2, B)
        w_fb, h_fb = self._fallback_size(height, width)
        fallback = size if (w_fb, h_fb) == (width, height) else _pair(w_fb, h_fb, device).view(2, 1, 1)
        wh = torch.where(found, wh, fallback.view(2, 1))
        # Integer offsets uniform in [0, W - w], as torch.randint(0, W - w + 1) in torchvision; the
        # fallback box is centred, as torchvision's: (W - w) // 2.
        free = size.view(2, 1) - wh
        u = torch.stack([rand(batch), rand(batch)])
        xy = torch.floor(torch.where(found, u * (free + 1), free / 2))
        return torch.cat([xy.T, wh.T], dim=1)

    def _fallback_size(self, height: int, width: int) -> tuple[float, float]:
        in_ratio = width / height
        if in_ratio < self.crop_ratio[0]:
            w = width
            h = int(round(w / self.crop_ratio[0]))
        elif in_ratio > self.crop_ratio[1]:
            h = height
            w = int(round(h * self.crop_ratio[1]))
        else:
            w, h = width, height
        return float(w), float(h)

    # ---- application ------------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> normalised float32, no augmentation: the evaluation transform."""
        x = images / 255.0 if images.dtype == torch.uint8 else images.float() / 255.0
        return torch.addcmul(self._norm_shift, x, self._norm_scale)

    def forward(self, images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> one augmented, normalised float32 view (B, 3, H, W)."""
        b, _, h, w = images.shape
        return self.apply(images, self.sample_params(b, h, w, images.device, gen))

    def apply(self, images: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Applies given parameters: uint8 or [0, 1] float (B, 3, H, W) -> normalised float32.

        Every step is computed for the whole batch and kept per sample with `torch.where`, so the
        host never reads a device value and `torch.compile(fullgraph=True)` traces it whole.
        """
        per_sample = lambda flag: flag.view(-1, 1, 1, 1)  # noqa: E731
        x = images / 255.0 if images.dtype == torch.uint8 else images.float()
        x = crop_and_flip(x, p.crop, p.flip)
        x = torch.where(per_sample(p.jitter), self._color_jitter(x, p), x)
        x = torch.where(per_sample(p.grayscale), _luma(x, self._luma_weights), x)
        if self.blur_p > 0:
            x = torch.where(per_sample(p.blur), gaussian_blur(x, p.sigma, self.blur_kernel_size), x)
        return torch.addcmul(self._norm_shift, x, self._norm_scale)

    def _color_jitter(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Brightness, contrast, saturation and hue in each sample's order, for every sample.

        x: (B, 3, H, W) in [0, 1]. See the module docstring for the schedule of seven slots.
        """
        slots = self._blend_slots(p)  # (B, 7, 3)
        # Per slot and sample, the luma weights, zeroed for brightness and idle slots: their blend
        # target then comes out 0 with no selection op.
        luma_weights = slots[:, :, 1:2] * self._luma_weights.view(1, 1, 3)  # (B, 7, 3)
        hue_k0 = torch.add(self._hue_offsets, p.hue.view(-1, 1, 1, 1), alpha=6.0)  # (B, 3, 1, 1)
        for s in range(_SLOTS):
            if s == _HUE_SLOT:
                x = _rotate_hue(x, hue_k0)
                continue
            factor, takes_mean = slots[:, s, 0, None, None, None], slots[:, s, 2, None, None, None]
            luma = _luma(x, luma_weights[:, s, :, None, None])  # (B, 1, H, W)
            # lerp is exact at weights 0 and 1: the luma image (saturation) or its mean (contrast).
            other = torch.lerp(luma, luma.mean(dim=(2, 3), keepdim=True), takes_mean)
            x = _mix(other, x, factor)
        return x

    def _blend_slots(self, p: AugmentParams) -> torch.Tensor:
        """(B, 7, 3): for each schedule slot, its blend's (factor, uses the luma, takes its mean) per sample.

        The op at position i of a sample's order goes to slot 3 + i - (position of hue), so hue always
        lands on the hue slot and the blends keep their order around it; unused slots stay identities.
        """
        b = p.jitter_order.shape[0]
        position = p.jitter_order.argsort(dim=1)  # (B, 4): where each op sits in the sample's order
        slot = position[:, :3] - position[:, 3:] + _HUE_SLOT  # (B, 3) for brightness, contrast, saturation
        factors = torch.stack([p.brightness, p.contrast, p.saturation], dim=1).unsqueeze(2)
        src = torch.cat([factors, self._blend_kind.expand(b, 3, 2)], dim=2)
        return self._idle_slot.expand(b, _SLOTS, 3).scatter(1, slot.unsqueeze(2).expand(b, 3, 3), src)


def crop_and_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Resamples each crop box to the full image size with bilinear interpolation, mirrored where `flip`.

    x: (B, C, H, W) float. boxes: (B, 4) pixels (x0, y0, w, h). flip: (B,) bool.
    The affine map sends output pixel centres onto the box's pixel grid (align_corners=False), so the
    full-image box without flip reproduces the input exactly. Sample positions are held between the
    centres of the box's first and last pixels, so the taps at its edges never read the pixels around it:
    crop, then resize, as torchvision's `resized_crop` and PIL do.
    """
    b, c, h, w = x.shape
    boxes = boxes.to(x.dtype)  # theta, hence the grid, must have x's dtype
    size = _pair(w, h, x.device).to(x.dtype)
    scale = boxes[:, 2:] / size  # (B, 2) box size over image size
    shift = torch.addcdiv(scale - 1, boxes[:, :2], size, value=2)  # box centre in [-1, 1]: (2 x0 + w) / W - 1
    sx = torch.where(flip, -scale[:, 0], scale[:, 0])
    zero = torch.zeros_like(sx)
    theta = torch.stack([sx, zero, shift[:, 0], zero, scale[:, 1], shift[:, 1]], dim=1).view(b, 2, 3)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)  # (B, H, W, 2) normalised (x, y)
    # The box's centre +- (its size - 1 pixel) / the image size: its first and last pixel centres.
    half = scale - size.reciprocal()  # (B, 2): (w - 1) / W, (h - 1) / H
    grid = grid.clamp((shift - half).view(b, 1, 1, 2), (shift + half).view(b, 1, 1, 2))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    wr, wg, wb = _GRAY_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _luma(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, with (1 or B, 3, 1, 1) weights held on the device: two ops."""
    return (x * weights).sum(dim=1, keepdim=True)


def _mix(other: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """clamp(factor * x + (1 - factor) * other, 0, 1), torchvision's `_blend`; factor broadcasts.

    lerp returns `x` itself, bit for bit, at factor 1, which makes the unused jitter slots identities.
    """
    return torch.lerp(other, x, factor).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scales intensities by a per-sample factor (B,), clamped to [0, 1]. x: (B, 3, H, W) in [0, 1]."""
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blends each image (B, 3, H, W) in [0, 1] with its mean luma, per-sample factor (B,)."""
    return _mix(grayscale(x).mean(dim=(1, 2, 3), keepdim=True), x, factor.view(-1, 1, 1, 1))


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blends each image (B, 3, H, W) in [0, 1] with its grayscale version, per-sample factor (B,)."""
    return _mix(grayscale(x), x, factor.view(-1, 1, 1, 1))


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotates hue by a per-sample shift (B,) in turns, as torchvision's HSV round trip does.

    x: (B, 3, H, W) in [0, 1]; returns the same shape, in [0, 1].
    """
    offsets = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # _HUE_OFFSETS
    return _rotate_hue(x, torch.add(offsets, shift.view(-1, 1, 1, 1).to(x.dtype), alpha=6.0))


def _rotate_hue(x: torch.Tensor, k0: torch.Tensor) -> torch.Tensor:
    """Hue rotation through HSV without the sector table: x (B, 3, H, W) in [0, 1] -> same shape.

    k0: (B, 3, 1, 1), n_c + 6 * shift with n = (5, 3, 1) for (r, g, b). With v = max, delta = max - min
    and h the hue in sixths of a turn, out_c = v - delta * clamp(min(k_c, 4 - k_c), 0, 1) with
    k_c = (n_c + h + 6 shift) mod 6: the same values as torchvision's `_rgb2hsv` + `_hsv2rgb`, whose
    sector table this curve encodes. Since the mod is taken there, h may be any representative:
    2 * (argmax channel) + (next channel - the one after) / delta, in [-1, 5].
    """
    v, top = x.max(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    rgbrg = torch.cat([x, x[:, :2]], dim=1)
    diff = (rgbrg[:, 1:4] - rgbrg[:, 2:5]).gather(1, top)  # x[top + 1] - x[top + 2]
    # delta = 0 only where all channels are equal: diff is 0 there and the result is v whatever k.
    k = torch.addcdiv(torch.add(k0, top, alpha=2), diff, delta.clamp_min(_TINY)).remainder(6)
    return torch.addcmul(v, delta, torch.minimum(k, 4 - k).clamp(0, 1), value=-1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with a per-sample sigma (B,) in pixels, reflect padding.

    Each sample's kernel is one group of a grouped convolution over the sample's C x H rows (then
    columns), so the kernel is never repeated per channel.
    """
    b, c, h, w = x.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.softmax(-0.5 * (offsets / sigma.view(-1, 1).to(x.dtype)).square(), dim=1)  # (B, K), sums to 1
    y = F.pad(x, (half, half, half, half), mode="reflect")  # (B, C, H + 2 half, W + 2 half)
    y = F.conv2d(y.reshape(1, b, c * (h + 2 * half), w + 2 * half), k.view(b, 1, 1, kernel_size), groups=b)
    y = F.conv3d(y.view(1, b, c, h + 2 * half, w), k.view(b, 1, 1, kernel_size, 1), groups=b)
    return y.view(b, c, h, w)


def build_augment(cfg: dict) -> SimCLRAugment:
    """SimCLRAugment from an `augmentation` config mapping (lists become tuples)."""
    pipeline_keys = ("backend", "num_workers")  # which pipeline makes the views, not how: read elsewhere
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(cfg).items()}
    kwargs = {k: v for k, v in kwargs.items() if k not in pipeline_keys}
    return SimCLRAugment(**kwargs)
