"""The random resized crop and flip of a view, batched: drawing the boxes and resampling them.

The geometry of a view, kept apart from `simclr.views.augment.SimCLRAugment`, which holds the ranges
as buffers and composes the view. Boxes are (B, 4) float (x0, y0, w, h) in pixels of the input image,
drawn per sample exactly as torchvision's `RandomResizedCrop.get_params` draws one, and resampled to the
view size (the image's by default) with one `affine_grid` + `grid_sample` for the whole batch, flip
included. Neither step reads a device value on the host or builds a tensor from host data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(a: float, b: float, device: torch.device) -> torch.Tensor:
    """(2,) float32 [a, b] made on the device without a host-to-device copy (linspace ends are exact)."""
    return torch.linspace(a, b, 2, device=device)


def sample_crops(
    batch: int,
    height: int,
    width: int,
    lo: torch.Tensor,
    span: torch.Tensor,
    ratio_range: tuple[float, float],
    device: torch.device,
    gen: torch.Generator | None,
    tries: int = 10,
) -> torch.Tensor:
    """torchvision's RandomResizedCrop.get_params, vectorised: (B, 4) boxes (x0, y0, w, h) in pixels.

    lo, span: (2, 1, 1) float32, the lower ends and widths of the (scale, log ratio) ranges: each try
    draws scale (a fraction of the image area) and log ratio (w / h) uniformly from them. ratio_range:
    the same ratios, for the fallback. Each sample takes the first of `tries` draws whose box fits the
    image; a sample with none falls back to the central crop clamped to the ratio range, exactly as
    torchvision does. Widths and heights are handled as one (2, ...) tensor against the image size (W, H).
    """
    rand = lambda n: torch.rand(n, device=device, generator=gen)  # noqa: E731
    u = torch.stack([rand(batch * tries), rand(batch * tries)]).view(2, batch, tries)
    scale, log_ratio = (u * span.to(device) + lo.to(device)).unbind(0)
    ratio = torch.exp(log_ratio)
    area = height * width * scale
    wh = torch.stack([area * ratio, area / ratio]).sqrt().round()  # (2, B, tries)
    size = _pair(width, height, device).view(2, 1, 1)
    ok = ((wh > 0) & (wh <= size)).all(0)
    found = ok.any(1)
    first = ok.view(torch.uint8).argmax(1, keepdim=True)  # the first fitting try (argmax takes the first)
    wh = wh.gather(2, first.expand(2, batch, 1)).squeeze(2)  # (2, B)
    w_fb, h_fb = _fallback_size(height, width, ratio_range)
    fallback = size if (w_fb, h_fb) == (width, height) else _pair(w_fb, h_fb, device).view(2, 1, 1)
    wh = torch.where(found, wh, fallback.view(2, 1))
    # Integer offsets uniform in [0, W - w], as torch.randint(0, W - w + 1) in torchvision; the
    # fallback box is centred, as torchvision's: (W - w) // 2.
    free = size.view(2, 1) - wh
    u = torch.stack([rand(batch), rand(batch)])
    xy = torch.floor(torch.where(found, u * (free + 1), free / 2))
    return torch.cat([xy.T, wh.T], dim=1)


def _fallback_size(height: int, width: int, ratio_range: tuple[float, float]) -> tuple[float, float]:
    """(w, h) in pixels of torchvision's fallback crop: the whole image, cut to the nearest ratio allowed."""
    in_ratio = width / height
    if in_ratio < ratio_range[0]:
        w = width
        h = int(round(w / ratio_range[0]))
    elif in_ratio > ratio_range[1]:
        h = height
        w = int(round(h * ratio_range[1]))
    else:
        w, h = width, height
    return float(w), float(h)


def crop_and_flip(
    x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, out_size: int | None = None
) -> torch.Tensor:
    """Resamples each crop box to an `out_size` x `out_size` view (default: the image's H x W) with bilinear
    interpolation, mirrored where `flip`.

    x: (B, C, H, W) float. boxes: (B, 4) pixels (x0, y0, w, h). flip: (B,) bool. Returns (B, C, S, S)
    with S = `out_size`, or (B, C, H, W).
    The affine map sends output pixel centres onto the box's pixel grid (align_corners=False), so the
    full-image box without flip reproduces the input exactly at the image's size, and at half of it
    averages each 2 x 2 block (as `avg_pool2d(x, 2)`). Sample positions are held between the
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
    out_h, out_w = (h, w) if out_size is None else (out_size, out_size)
    grid = F.affine_grid(theta, [b, c, out_h, out_w], align_corners=False)  # (B, S, S, 2) normalised (x, y)
    # The box's centre +- (its size - 1 pixel) / the image size: its first and last pixel centres.
    half = scale - size.reciprocal()  # (B, 2): (w - 1) / W, (h - 1) / H
    grid = grid.clamp((shift - half).view(b, 1, 1, 2), (shift + half).view(b, 1, 1, 2))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
