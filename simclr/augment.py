"""SimCLR augmentations computed on the device, batched, with per-sample random parameters.

The input is a uint8 batch (B, 3, H, W) already on the module's device; the output is a float32
normalised batch of the same shape. Every random quantity is drawn per sample, so a batch of B images
gets B different crops, flips, jitters, and so on, as torchvision's per-image transforms would give.
Crop and flip together are one `grid_sample` call; the colour operations are vectorised over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from simclr.errors import ConfigError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma (torchvision rounds red to 0.2989)


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


def _uniform(lo: float, hi: float, n: int, device: torch.device, gen: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device, generator=gen)


def _bernoulli(p: float, n: int, device: torch.device, gen: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, device=device, generator=gen) < p


def _check_range(name: str, value: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    a, b = float(value[0]), float(value[1])
    if not (lo <= a <= b <= hi):
        raise ConfigError(f"augmentation.{name}={[a, b]} must satisfy {lo} <= min <= max <= {hi}")
    return a, b


def _check_probability(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"augmentation.{name}={p} is a probability and must lie in [0, 1]")
    return float(p)


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
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # ---- parameters -------------------------------------------------------------------------
    def sample_params(
        self, batch: int, height: int, width: int, device: torch.device, gen: torch.Generator | None = None
    ) -> AugmentParams:
        """Draws one set of parameters per sample (see `AugmentParams` for shapes and units)."""
        b, c, s = self.brightness, self.contrast, self.saturation
        return AugmentParams(
            crop=self._sample_crops(batch, height, width, device, gen),
            flip=_bernoulli(self.flip_p, batch, device, gen),
            jitter=_bernoulli(self.jitter_p, batch, device, gen),
            brightness=_uniform(max(0.0, 1 - b), 1 + b, batch, device, gen),
            contrast=_uniform(max(0.0, 1 - c), 1 + c, batch, device, gen),
            saturation=_uniform(max(0.0, 1 - s), 1 + s, batch, device, gen),
            hue=_uniform(-self.hue, self.hue, batch, device, gen),
            jitter_order=torch.rand(batch, 4, device=device, generator=gen).argsort(dim=1),
            grayscale=_bernoulli(self.grayscale_p, batch, device, gen),
            blur=_bernoulli(self.blur_p, batch, device, gen),
            sigma=_uniform(*self.blur_sigma, batch, device, gen),
        )

    def _sample_crops(
        self, batch: int, height: int, width: int, device: torch.device, gen: torch.Generator | None, tries: int = 10
    ) -> torch.Tensor:
        """torchvision's RandomResizedCrop.get_params, vectorised: (B, 4) boxes (x0, y0, w, h) in pixels.

        Each sample takes the first of `tries` draws whose box fits the image; a sample with none falls
        back to the central crop clamped to the ratio range, exactly as torchvision does.
        """
        area = height * width
        scale = _uniform(*self.crop_scale, batch * tries, device, gen).view(batch, tries)
        log_r = _uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), batch * tries, device, gen)
        ratio = torch.exp(log_r).view(batch, tries)
        w = torch.round(torch.sqrt(area * scale * ratio))
        h = torch.round(torch.sqrt(area * scale / ratio))
        ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(ok[:, 0], -1, dtype=torch.long))
        w_fb, h_fb = self._fallback_size(height, width)
        pick = first.clamp(min=0).unsqueeze(1)
        w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.full_like(w[:, 0], w_fb))
        h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.full_like(h[:, 0], h_fb))
        # Integer offsets uniform in [0, W - w], as torch.randint(0, W - w + 1) in torchvision.
        x0 = torch.floor(torch.rand(batch, device=device, generator=gen) * (width - w + 1))
        y0 = torch.floor(torch.rand(batch, device=device, generator=gen) * (height - h + 1))
        # The fallback box is centred, as torchvision's: (W - w) // 2.
        x0 = torch.where(first >= 0, x0, torch.floor((width - w) / 2))
        y0 = torch.where(first >= 0, y0, torch.floor((height - h) / 2))
        return torch.stack([x0, y0, w, h], dim=1)

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
        return (images.float() / 255.0 - self.mean) / self.std

    def forward(self, images: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> one augmented, normalised float32 view (B, 3, H, W)."""
        b, _, h, w = images.shape
        return self.apply(images, self.sample_params(b, h, w, images.device, gen))

    def apply(self, images: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Applies given parameters: uint8 or [0, 1] float (B, 3, H, W) -> normalised float32."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = crop_and_flip(x, p.crop, p.flip)
        x = self._color_jitter(x, p)
        x = torch.where(p.grayscale.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
        if self.blur_p > 0:
            x = torch.where(p.blur.view(-1, 1, 1, 1), gaussian_blur(x, p.sigma, self.blur_kernel_size), x)
        return (x - self.mean) / self.std

    def _color_jitter(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        idx = p.jitter.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        y, order = x[idx], p.jitter_order[idx]
        factors = (p.brightness[idx], p.contrast[idx], p.saturation[idx], p.hue[idx])
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        # Per-sample random order: at slot s every sample applies the op its permutation puts there.
        for slot in range(4):
            for op_id, op in enumerate(ops):
                sel = (order[:, slot] == op_id).view(-1, 1, 1, 1)
                y = torch.where(sel, op(y, factors[op_id]), y)
        x = x.clone()
        x[idx] = y
        return x


def crop_and_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Resamples each crop box to the full image size with bilinear interpolation, mirrored where `flip`.

    x: (B, C, H, W) float. boxes: (B, 4) pixels (x0, y0, w, h). flip: (B,) bool.
    The affine map sends output pixel centres onto the box's pixel grid (align_corners=False), so the
    full-image box without flip reproduces the input exactly.
    """
    b, _, h, w = x.shape
    x0, y0, bw, bh = boxes.unbind(1)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = (bw / w) * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = (2 * x0 + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * y0 + bh) / h - 1
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    wr, wg, wb = _GRAY_WEIGHTS
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scales intensities by a per-sample factor (B,), clamped to [0, 1]."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blends each image with its mean luma, per-sample factor (B,)."""
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blends each image with its grayscale version, per-sample factor (B,)."""
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotates hue by a per-sample shift (B,) in turns, through HSV as torchvision does."""
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe_max = torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    s = delta / safe_max
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6.0, 1.0), torch.zeros_like(h))
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    # For sector i, (r, g, b) picks from (v, q, p, t) as in colorsys.hsv_to_rgb.
    candidates = torch.stack([v, q, p, t], dim=1)  # (B, 4, H, W)
    table = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=h.device)
    pick = table[i].permute(0, 3, 1, 2)  # (B, 3, H, W) indices into candidates
    return candidates.gather(1, pick)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (B,) in pixels and reflect padding."""
    b, c, h, w = x.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


def build_augment(cfg: dict) -> SimCLRAugment:
    """SimCLRAugment from an `augmentation` config mapping (lists become tuples)."""
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(cfg).items()}
    return SimCLRAugment(**kwargs)
