"""Per-pixel colour operations on batches: luma, blends, hue rotation, the jitter schedule and blur.

The colour arithmetic of a view, kept apart from `simclr.views.augment.SimCLRAugment`, which draws the
per-sample parameters and decides which sample gets which op. Every function takes a float batch (B,
3, H, W) in [0, 1] (blur: any C) and per-sample parameters as tensors, returns values in [0, 1], and is
made of whole-batch ops that never read a device value on the host.

Per sample, the results equal torchvision's functional ops (to 2e-4: torchvision weighs red 0.2989 in
the luma; tests/views/test_augment.py compares every jitter order). `jitter_slots` and `jitter_in_slots` apply
brightness, contrast, saturation and hue in each sample's own random order without branching on it: a
fixed schedule of seven slots, blend x3, hue, blend x3. A sample's ops that come before its hue go in
the blend slots just before the hue slot, those after it in the slots just after; each blend slot
computes clamp(lerp(other, x, f)) with a per-sample factor f and other = 0 (brightness), the mean luma
(contrast) or the luma image (saturation), and a slot a sample does not use gets f = 1, which leaves it
exactly unchanged. The slot table is one `scatter` of the inverse permutation; hue is one branchless HSV
rotation, out_c = v - delta * clamp(min(k_c, 4 - k_c), 0, 1). The constants they take (luma weights, hue
offsets, blend kinds, idle slots) are float32 buffers of `SimCLRAugment`, so a step builds no tensor
from host data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma (torchvision rounds red to 0.2989)
# Offsets n_c of the branchless HSV -> RGB map for (r, g, b): k_c = (n_c + 6 h) mod 6.
HUE_OFFSETS = (5.0, 3.0, 1.0)
# The jitter schedule: three blend slots, the hue slot, three blend slots.
JITTER_SLOTS = 7
_HUE_SLOT = 3
# Per blend op (brightness, contrast, saturation): whether its target uses the luma, and takes its mean.
BLEND_KINDS = ((0.0, 0.0), (1.0, 1.0), (1.0, 0.0))
# A slot no op of a sample lands in: (factor, uses the luma, takes its mean); factor 1 is the identity.
IDLE_SLOT = (1.0, 0.0, 0.0)
# The chroma is floored at this where it divides, so a gray pixel (chroma 0) gets a finite, unused hue.
_TINY = 1e-12


def _luma(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, with (1 or B, 3, 1, 1) weights held on the device: two ops."""
    return (x * weights).sum(dim=1, keepdim=True)


def _mix(other: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """clamp(factor * x + (1 - factor) * other, 0, 1), torchvision's `_blend`; factor broadcasts.

    lerp returns `x` itself, bit for bit, at factor 1, which makes the unused jitter slots identities.
    """
    return torch.lerp(other, x, factor).clamp(0, 1)


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


def jitter_slots(
    order: torch.Tensor, factors: torch.Tensor, blend_kinds: torch.Tensor, idle_slots: torch.Tensor
) -> torch.Tensor:
    """(B, 7, 3): for each schedule slot, its blend's (factor, uses the luma, takes its mean) per sample.

    order: (B, 4) long, each sample's permutation of (brightness, contrast, saturation, hue).
    factors: (B, 3) brightness, contrast and saturation factors. blend_kinds: (1, 3, 2), BLEND_KINDS.
    idle_slots: (1, 7, 3), IDLE_SLOT in every slot. The op at position i of a sample's order goes to
    slot 3 + i - (position of hue), so hue always lands on the hue slot and the blends keep their order
    around it; unused slots stay identities.
    """
    b = order.shape[0]
    position = order.argsort(dim=1)  # (B, 4): where each op sits in the sample's order
    slot = position[:, :3] - position[:, 3:] + _HUE_SLOT  # (B, 3) for brightness, contrast, saturation
    src = torch.cat([factors.unsqueeze(2), blend_kinds.expand(b, 3, 2)], dim=2)
    return idle_slots.expand(b, JITTER_SLOTS, 3).scatter(1, slot.unsqueeze(2).expand(b, 3, 3), src)


def jitter_in_slots(
    x: torch.Tensor, slots: torch.Tensor, luma_weights: torch.Tensor, hue_k0: torch.Tensor
) -> torch.Tensor:
    """Runs the schedule on every sample: x (B, 3, H, W) in [0, 1] -> same shape, in [0, 1].

    slots: (B, 7, 3) from `jitter_slots`. luma_weights: (1, 3, 1, 1), GRAY_WEIGHTS. hue_k0: (B, 3, 1, 1),
    HUE_OFFSETS + 6 * each sample's hue shift in turns (see `_rotate_hue`).
    """
    # Per slot and sample, the luma weights, zeroed for brightness and idle slots: their blend
    # target then comes out 0 with no selection op.
    weights = slots[:, :, 1:2] * luma_weights.view(1, 1, 3)  # (B, 7, 3)
    for s in range(JITTER_SLOTS):
        if s == _HUE_SLOT:
            x = _rotate_hue(x, hue_k0)
            continue
        factor, takes_mean = slots[:, s, 0, None, None, None], slots[:, s, 2, None, None, None]
        luma = _luma(x, weights[:, s, :, None, None])  # (B, 1, H, W)
        # lerp is exact at weights 0 and 1: the luma image (saturation) or its mean (contrast).
        other = torch.lerp(luma, luma.mean(dim=(2, 3), keepdim=True), takes_mean)
        x = _mix(other, x, factor)
    return x


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
