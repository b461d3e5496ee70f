"""SimCLRAugment: parameter ranges and rates, per-sample randomness, and agreement with torchvision."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from simclr.errors import ConfigError
from simclr.training.profiling import DispatchRecorder
from simclr.views.augment import AugmentParams, SimCLRAugment, build_augment
from simclr.views.colour import _mix, gaussian_blur
from simclr.views.crop import crop_and_flip
from tests.helpers import uint8_images

# Written out rather than imported, so a wrong constant in simclr/views/augment.py shows up here.
CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
BIG = 4096
NO_RANDOMNESS = dict(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0
)
# torchvision's float rgb_to_grayscale weighs red 0.2989, simclr 0.299 (ITU-R 601-2): up to 1e-4 apart.
COLOUR_ATOL = 2e-4


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def float_images(b: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=gen(seed))


def params_at(p: AugmentParams, i: int) -> AugmentParams:
    """The parameters of sample i alone, as a batch of one."""
    return AugmentParams(**{f.name: getattr(p, f.name)[i : i + 1] for f in dataclasses.fields(p)})


def within_sigmas(count: int, n: int, p: float, k: float = 5.0) -> bool:
    return abs(count - n * p) <= k * math.sqrt(n * p * (1 - p)) + 1e-9


# ---- sampled parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, height, width",
    [
        ({}, 32, 32),
        (dict(crop_scale=(0.2, 1.0)), 32, 32),
        (dict(crop_scale=(0.3, 0.6), crop_ratio=(0.5, 2.0)), 32, 32),
        (dict(crop_scale=(0.08, 1.0)), 24, 40),
    ],
)
def test_crop_boxes_are_integer_inside_the_image_and_in_range(kwargs: dict, height: int, width: int) -> None:
    aug = SimCLRAugment(**kwargs)
    crop = aug.sample_params(BIG, height, width, torch.device("cpu"), gen(1)).crop
    assert crop.shape == (BIG, 4)
    assert torch.equal(crop, crop.round())
    x0, y0, w, h = crop.double().unbind(1)
    assert (w >= 1).all() and (h >= 1).all() and (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= width).all() and (y0 + h <= height).all()
    # w = round(sqrt(A s r)) and h = round(sqrt(A s / r)): the unrounded sides lie within 0.5 of w and h.
    area, eps = height * width, 1e-6
    s_lo, s_hi = aug.crop_scale
    r_lo, r_hi = aug.crop_ratio
    assert ((w + 0.5) * (h + 0.5) / area >= s_lo - eps).all()
    assert ((w - 0.5) * (h - 0.5) / area <= s_hi + eps).all()
    assert ((w + 0.5) / (h - 0.5) >= r_lo - eps).all()
    assert ((w - 0.5) / (h + 0.5) <= r_hi + eps).all()


def test_crop_area_spans_the_scale_range() -> None:
    aug = SimCLRAugment()
    x0, y0, w, h = aug.sample_params(BIG, 32, 32, torch.device("cpu"), gen(2)).crop.unbind(1)
    frac = w * h / 1024
    assert frac.min() < 0.12 and frac.max() > 0.95
    # Offsets are spread over the free range, not pinned to a corner or the centre.
    free_x = 32 - w
    assert ((x0 == 0) & (free_x > 4)).any() and ((x0 == free_x) & (free_x > 4)).any()
    assert ((y0 > 0) & (y0 < 32 - h)).any()


@pytest.mark.parametrize("s, hue", [(0.4, 0.1), (0.8, 0.2), (1.5, 0.5)])
def test_jitter_factors_stay_in_range_and_cover_it(s: float, hue: float) -> None:
    aug = SimCLRAugment(brightness=s, contrast=s, saturation=s, hue=hue)
    p = aug.sample_params(BIG, 32, 32, torch.device("cpu"), gen(3))
    lo, hi = max(0.0, 1 - s), 1 + s
    for factor in (p.brightness, p.contrast, p.saturation):
        assert factor.shape == (BIG,)
        assert factor.min() >= lo and factor.max() <= hi
        assert factor.min() < lo + 0.01 * (hi - lo) and factor.max() > hi - 0.01 * (hi - lo)
    assert p.hue.min() >= -hue and p.hue.max() <= hue
    assert p.hue.min() < -0.98 * hue and p.hue.max() > 0.98 * hue


def test_jitter_order_rows_are_permutations_of_all_four_ops() -> None:
    p = SimCLRAugment().sample_params(BIG, 32, 32, torch.device("cpu"), gen(4))
    assert p.jitter_order.shape == (BIG, 4) and p.jitter_order.dtype == torch.long
    assert torch.equal(p.jitter_order.sort(dim=1).values, torch.arange(4).expand(BIG, 4))
    seen = {tuple(row) for row in p.jitter_order.tolist()}
    assert seen == set(itertools.permutations(range(4)))


def test_blur_sigma_stays_in_range() -> None:
    aug = SimCLRAugment(blur_p=0.5, blur_sigma=(0.3, 1.7))
    sigma = aug.sample_params(BIG, 32, 32, torch.device("cpu"), gen(5)).sigma
    assert sigma.min() >= 0.3 and sigma.max() <= 1.7
    assert sigma.min() < 0.32 and sigma.max() > 1.68


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(crop_scale=(0.2, 1.0), grayscale_p=0.1, blur_p=0.5),
        dict(flip_p=0.1, jitter_p=0.3, grayscale_p=0.9, blur_p=0.05),
    ],
)
def test_bernoulli_rates_match_probabilities(kwargs: dict) -> None:
    aug = SimCLRAugment(**kwargs)
    p = aug.sample_params(BIG, 32, 32, torch.device("cpu"), gen(6))
    for name, prob in [
        ("flip", aug.flip_p),
        ("jitter", aug.jitter_p),
        ("grayscale", aug.grayscale_p),
        ("blur", aug.blur_p),
    ]:
        flags = getattr(p, name)
        assert flags.dtype == torch.bool and flags.shape == (BIG,)
        count = int(flags.sum())
        assert within_sigmas(count, BIG, prob), f"{name}: {count}/{BIG} with p={prob}"


def test_bernoulli_probabilities_zero_and_one_are_exact() -> None:
    p = SimCLRAugment(flip_p=1.0, jitter_p=0.0, grayscale_p=1.0, blur_p=0.0).sample_params(
        BIG, 32, 32, torch.device("cpu"), gen(7)
    )
    assert p.flip.all() and p.grayscale.all()
    assert not p.jitter.any() and not p.blur.any()


def test_parameters_are_drawn_per_sample() -> None:
    p = SimCLRAugment(blur_p=0.5).sample_params(BIG, 32, 32, torch.device("cpu"), gen(8))
    assert len({tuple(box) for box in p.crop.tolist()}) > BIG // 4
    for name in ("brightness", "contrast", "saturation", "hue", "sigma"):
        assert getattr(p, name).unique().numel() > 0.99 * BIG, name
    for name in ("flip", "jitter", "grayscale", "blur"):
        assert 0 < int(getattr(p, name).sum()) < BIG, name


def test_two_views_of_one_batch_differ() -> None:
    aug = SimCLRAugment()
    images = uint8_images(16)
    g = gen(9)
    v1, v2 = aug(images, g), aug(images, g)
    assert v1.shape == v2.shape == images.shape
    # Every image gets two different views, not just the batch as a whole.
    assert ((v1 - v2).abs().flatten(1).amax(1) > 1e-3).all()
    v3, v4 = aug(images), aug(images)
    assert not torch.allclose(v3, v4)


def test_same_generator_seed_gives_the_same_view() -> None:
    aug = SimCLRAugment(blur_p=0.5)
    images = uint8_images(8)
    assert torch.equal(aug(images, gen(10)), aug(images, gen(10)))


# ---- application ----------------------------------------------------------------------------


def expected_normalised(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - CIFAR_MEAN) / CIFAR_STD


def test_without_randomness_the_output_is_the_normalised_input() -> None:
    images = uint8_images(32, seed=11)
    out = SimCLRAugment(**NO_RANDOMNESS)(images, gen(11))
    torch.testing.assert_close(out, expected_normalised(images), atol=1e-5, rtol=0)


def test_normalize_uses_the_cifar10_statistics() -> None:
    images = uint8_images(8, seed=12)
    torch.testing.assert_close(SimCLRAugment().normalize(images), expected_normalised(images), atol=1e-5, rtol=0)


def test_default_mean_and_std_are_cifar10s() -> None:
    aug = SimCLRAugment()
    torch.testing.assert_close(aug.mean, CIFAR_MEAN)
    torch.testing.assert_close(aug.std, CIFAR_STD)


def test_float_input_in_unit_range_is_accepted() -> None:
    images = uint8_images(4, seed=13)
    aug = SimCLRAugment(**NO_RANDOMNESS)
    torch.testing.assert_close(aug(images.float() / 255, gen(0)), expected_normalised(images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (3, 3, 24, 40), (1, 3, 16, 16)])
def test_output_is_float32_of_the_input_shape_on_cpu(shape: tuple[int, ...]) -> None:
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = SimCLRAugment(blur_p=0.5)(images, gen(14))
    assert out.dtype == torch.float32 and out.shape == shape and out.device.type == "cpu"
    assert torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_output_is_float32_of_the_input_shape_on_cuda() -> None:
    device = torch.device("cuda")
    aug = SimCLRAugment(blur_p=0.5).to(device)
    images = uint8_images(64).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    out = aug(images, g)
    assert out.dtype == torch.float32 and out.shape == images.shape and out.device.type == "cuda"
    assert torch.isfinite(out).all()
    p = aug.sample_params(64, 32, 32, device, g)
    assert p.crop.device.type == "cuda" and p.flip.device.type == "cuda"
    # The same parameters give the same view on either device.
    p_cpu = AugmentParams(**{f.name: getattr(p, f.name).cpu() for f in dataclasses.fields(p)})
    torch.testing.assert_close(
        aug.apply(images, p).cpu(), SimCLRAugment(blur_p=0.5).apply(images.cpu(), p_cpu), atol=1e-3, rtol=0
    )


def test_batched_apply_equals_per_sample_apply() -> None:
    """No statistic leaks across the batch: sample i depends on image i and its own parameters only."""
    aug = SimCLRAugment(blur_p=0.5)
    images = uint8_images(12, seed=15)
    p = aug.sample_params(12, 32, 32, torch.device("cpu"), gen(15))
    assert 0 < int(p.blur.sum()) < 12 and 0 < int(p.jitter.sum()) < 12
    batched = aug.apply(images, p)
    for i in range(12):
        torch.testing.assert_close(batched[i : i + 1], aug.apply(images[i : i + 1], params_at(p, i)), atol=1e-5, rtol=0)


def test_full_pipeline_matches_torchvision_per_image() -> None:
    """Full-image crop, flip, jitter in each sample's order, grayscale, normalise, as torchvision's ops."""
    aug = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.8, grayscale_p=0.3)
    images = uint8_images(32, seed=16)
    p = aug.sample_params(32, 32, 32, torch.device("cpu"), gen(16))
    out = aug.apply(images, p)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    factors = (p.brightness, p.contrast, p.saturation, p.hue)
    for i in range(32):
        img = TF.to_dtype(images[i], torch.float32, scale=True)
        if p.flip[i]:
            img = TF.horizontal_flip(img)
        if p.jitter[i]:
            for op_id in p.jitter_order[i].tolist():
                img = ops[op_id](img, float(factors[op_id][i]))
        if p.grayscale[i]:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        ref = TF.normalize(img, CIFAR_MEAN.flatten().tolist(), CIFAR_STD.flatten().tolist())
        torch.testing.assert_close(out[i], ref, atol=COLOUR_ATOL / 0.24, rtol=0, msg=f"sample {i}")


def test_grayscale_with_probability_one_gives_equal_channels() -> None:
    aug = SimCLRAugment(grayscale_p=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = aug(uint8_images(16, seed=17), gen(17))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    # Also through the default normalisation, once undone.
    out = SimCLRAugment(grayscale_p=1.0)(uint8_images(16, seed=17), gen(17)) * CIFAR_STD + CIFAR_MEAN
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], atol=1e-5, rtol=0)


def test_output_stays_in_the_unit_range_before_normalisation() -> None:
    aug = SimCLRAugment(
        brightness=0.8,
        contrast=0.8,
        saturation=0.8,
        hue=0.2,
        jitter_p=1.0,
        blur_p=0.5,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    out = aug(uint8_images(64, seed=18), gen(18))
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    assert (out == 0).any() and (out == 1).any()  # factors up to 1.8 reach both ends: the clamp is what holds it


# ---- geometry -------------------------------------------------------------------------------


def random_boxes(b: int, size: int, seed: int) -> torch.Tensor:
    """(b, 4) integer boxes (x0, y0, w, h) anywhere in a size x size image, 1 to size pixels a side, as
    RandomResizedCrop draws them: edges of the image included."""
    g = gen(seed)
    wh = torch.randint(1, size + 1, (b, 2), generator=g)
    xy = (torch.rand(b, 2, generator=g) * (size - wh + 1)).floor().long()
    return torch.cat([xy, wh], 1).float()


@pytest.mark.parametrize("view_size", [None, 24, 16, 40])
def test_crop_and_flip_equals_torchvisions_resized_crop(view_size: int | None) -> None:
    """Crop, then resize: equal to torchvision's tensor `resized_crop` on the whole image, edges included
    (the bilinear taps at the box's edges read none of the pixels around it), at the image's size and at
    smaller and larger view sizes."""
    size, b = 32, 48
    out_size = view_size or size
    x = float_images(b, size, size, seed=22)
    boxes = random_boxes(b, size, seed=22)
    out = crop_and_flip(x, boxes, torch.zeros(b, dtype=torch.bool), view_size)
    flipped = crop_and_flip(x, boxes, torch.ones(b, dtype=torch.bool), view_size)
    assert out.shape == (b, 3, out_size, out_size)
    for i in range(b):
        x0, y0, w, h = (int(v) for v in boxes[i])
        ref = TF.resized_crop(x[i], top=y0, left=x0, height=h, width=w, size=[out_size] * 2, antialias=False)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0, msg=f"box {boxes[i].tolist()}")
        torch.testing.assert_close(flipped[i], TF.horizontal_flip(ref), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped, out.flip(-1), atol=1e-5, rtol=0)


def test_crop_and_flip_equals_pils_crop_and_bilinear_resize_to_the_uint8_rounding() -> None:
    """The reference path's crop (PIL crop + BILINEAR resize) gives the same image, to PIL's rounding."""
    size, b = 32, 24
    images = uint8_images(b, seed=25)
    boxes = random_boxes(b, size, seed=25)
    out = crop_and_flip(images / 255.0, boxes, torch.zeros(b, dtype=torch.bool))
    for i in range(b):
        x0, y0, w, h = (int(v) for v in boxes[i])
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy()).crop((x0, y0, x0 + w, y0 + h))
        ref = torch.from_numpy(np.array(pil.resize((size, size), Image.BILINEAR))).permute(2, 0, 1) / 255.0
        torch.testing.assert_close(out[i], ref, atol=1.01 / 255, rtol=0, msg=f"box {boxes[i].tolist()}")


def test_crop_and_flip_with_the_full_box_is_identity_or_mirror() -> None:
    x = float_images(4, 24, 40, seed=23)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 24.0]]).expand(4, 4)
    flip = torch.tensor([False, True, False, True])
    out = crop_and_flip(x, boxes, flip)
    torch.testing.assert_close(out[~flip], x[~flip], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[flip], x[flip].flip(-1), atol=1e-5, rtol=0)


def test_a_half_size_view_of_the_full_box_averages_each_2x2_block() -> None:
    x = float_images(3, 32, 32, seed=26)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(3, 4)
    out = crop_and_flip(x, boxes, torch.zeros(3, dtype=torch.bool), 16)
    torch.testing.assert_close(out, torch.nn.functional.avg_pool2d(x, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [24, 16])
def test_views_take_the_configured_size_and_evaluation_the_image_size(size: int) -> None:
    aug = build_augment({"size": size})
    images = uint8_images(5, seed=27)
    assert aug(images).shape == (5, 3, size, size)
    assert aug.normalize(images).shape == (5, 3, 32, 32)


def test_crop_and_flip_of_a_padded_image_equals_resizing_the_image() -> None:
    """Cropping the original back out of a zero-padded copy resamples it like a bilinear resize."""
    x = float_images(2, 16, 16, seed=24)
    big = torch.nn.functional.pad(x, (3, 5, 2, 6))  # 24 x 24, the original at x0=3, y0=2
    boxes = torch.tensor([[3.0, 2.0, 16.0, 16.0]]).expand(2, 4)
    out = crop_and_flip(big, boxes, torch.zeros(2, dtype=torch.bool))
    ref = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)  # the zero padding never reaches the view


# ---- blur -----------------------------------------------------------------------------------


def test_gaussian_blur_keeps_a_constant_image_constant() -> None:
    x = torch.full((4, 3, 16, 16), 0.3)
    x[1] = 0.9
    out = gaussian_blur(x, torch.tensor([0.1, 0.5, 1.0, 2.0]), 3)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(gaussian_blur(x, torch.full((4,), 1.5), 7), x, atol=1e-6, rtol=0)


def test_gaussian_blur_reduces_noise_variance_more_for_larger_sigma() -> None:
    x = float_images(4, 32, 32, seed=25)
    sigma = torch.tensor([0.3, 0.8, 1.5, 2.0])
    var = gaussian_blur(x, sigma, 5).var(dim=(1, 2, 3))
    assert (var < x.var(dim=(1, 2, 3))).all()
    assert (var[1:] < var[:-1]).all()
    # The mean survives the blur (reflect padding, normalised kernel).
    torch.testing.assert_close(gaussian_blur(x, sigma, 5).mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=5e-3, rtol=0)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gaussian_blur_matches_torchvision_per_sample(kernel_size: int) -> None:
    x = float_images(4, 16, 16, seed=26)
    sigma = torch.tensor([0.2, 0.7, 1.3, 2.0])
    out = gaussian_blur(x, sigma, kernel_size)
    for i in range(4):
        ref = TF.gaussian_blur(x[i], [kernel_size, kernel_size], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_blur_is_applied_only_where_drawn() -> None:
    aug = SimCLRAugment(**{**NO_RANDOMNESS, "blur_p": 0.5})
    images = uint8_images(32, seed=27)
    p = aug.sample_params(32, 32, 32, torch.device("cpu"), gen(27))
    out = aug.apply(images, p)
    plain = expected_normalised(images)
    blurred = (gaussian_blur(images.float() / 255, p.sigma, 3) - CIFAR_MEAN) / CIFAR_STD
    torch.testing.assert_close(out[~p.blur], plain[~p.blur], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[p.blur], blurred[p.blur], atol=1e-5, rtol=0)


# ---- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop_scale=(0.0, 1.0)),
        dict(crop_scale=(0.5, 0.2)),
        dict(crop_scale=(0.1, 1.5)),
        dict(crop_ratio=(4 / 3, 3 / 4)),
        dict(crop_ratio=(0.0, 1.0)),
        dict(flip_p=1.5),
        dict(flip_p=-0.1),
        dict(jitter_p=1.5),
        dict(jitter_p=-0.1),
        dict(grayscale_p=1.5),
        dict(grayscale_p=-0.1),
        dict(blur_p=1.5),
        dict(blur_p=-0.1),
        dict(hue=0.6),
        dict(hue=-0.1),
        dict(brightness=-0.1),
        dict(contrast=-0.1),
        dict(saturation=-0.1),
        dict(blur_kernel_size=4),
        dict(blur_kernel_size=0),
        dict(blur_sigma=(2.0, 0.1)),
        dict(size=0),
        dict(size=-8),
    ],
)
def test_invalid_config_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SimCLRAugment(**kwargs)
    with pytest.raises(ConfigError):
        build_augment({k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})


def test_build_augment_accepts_config_lists() -> None:
    cfg = {
        "crop_scale": [0.2, 1.0],
        "crop_ratio": [0.75, 4 / 3],
        "flip_p": 0.5,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.4,
        "hue": 0.1,
        "jitter_p": 0.8,
        "grayscale_p": 0.1,
        "blur_p": 0.5,
        "blur_sigma": [0.1, 2.0],
        "blur_kernel_size": 3,
    }
    aug = build_augment(cfg)
    assert isinstance(aug, SimCLRAugment)
    assert aug.crop_scale == (0.2, 1.0) and aug.grayscale_p == 0.1 and aug.blur_p == 0.5
    assert aug.blur_sigma == (0.1, 2.0) and aug.blur_kernel_size == 3
    out = aug(uint8_images(4), gen(28))
    assert out.shape == (4, 3, 32, 32)


def test_build_augment_rejects_unknown_keys() -> None:
    with pytest.raises(TypeError):
        build_augment({"crop_scael": [0.2, 1.0]})


def test_fallback_crop_is_central_as_in_torchvision() -> None:
    aug = SimCLRAugment(crop_scale=(1.0, 1.0))
    crop = aug.sample_params(256, 32, 64, torch.device("cpu"), gen(29)).crop
    assert torch.equal(crop, torch.tensor([[10.0, 0.0, 43.0, 32.0]]).expand(256, 4))


# ---- cost on the device ---------------------------------------------------------------------

# Ops one view dispatches (`simclr.training.profiling`), whatever the batch size: 126 by default, 135 with
# blur (simclr/views/augment.py). Picking the jittered samples out with `nonzero` would cost 474, 5 of
# them synchronising. The budgets leave about 10% of room, so a regression fails here.
OP_BUDGETS = {"default": ({}, 139), "blur": ({"blur_p": 0.5}, 148)}


@pytest.mark.parametrize("config", sorted(OP_BUDGETS))
def test_a_view_makes_no_host_device_synchronisation(config: str) -> None:
    aug = SimCLRAugment(**OP_BUDGETS[config][0])
    images = uint8_images(64, seed=31)
    for generator in (gen(31), None):
        with DispatchRecorder() as rec:
            aug(images, generator)
        assert rec.syncs == [], "\n".join(str(e) for e in rec.syncs)


@pytest.mark.parametrize("config", sorted(OP_BUDGETS))
def test_a_view_stays_within_its_op_budget(config: str) -> None:
    kwargs, budget = OP_BUDGETS[config]
    with DispatchRecorder() as rec:
        SimCLRAugment(**kwargs)(uint8_images(64, seed=32), gen(32))
    assert rec.op_count <= budget, f"{rec.op_count} ops > {budget}: {rec.ops.most_common()}"


def test_samples_without_jitter_leave_the_colour_step_untouched() -> None:
    """Jitter is computed for every sample; where it was not drawn the input must come through exactly."""
    aug = SimCLRAugment(
        crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, grayscale_p=0.0, jitter_p=0.5, hue=0.5
    )
    images = uint8_images(32, seed=33)
    p = aug.sample_params(32, 32, 32, torch.device("cpu"), gen(33))
    assert 0 < int(p.jitter.sum()) < 32
    out = aug.apply(images, p)
    plain = aug.normalize(images)  # the full box without flip is an exact identity
    torch.testing.assert_close(out[~p.jitter], plain[~p.jitter], atol=1e-6, rtol=0)
    assert ((out[p.jitter] - plain[p.jitter]).abs().flatten(1).amax(1) > 1e-2).all()
    # Nothing of a jitter-free sample's factors or order reaches its output.
    wild = dataclasses.replace(
        p,
        brightness=torch.full((32,), 1.4),
        contrast=torch.full((32,), 0.6),
        saturation=torch.zeros(32),
        hue=torch.full((32,), 0.5),
        jitter_order=p.jitter_order.flip(1),
    )
    assert torch.equal(aug.apply(images, wild)[~p.jitter], out[~p.jitter])


def test_every_jitter_order_matches_torchvision() -> None:
    """All 24 orders, one per sample: the blend slots around the hue slot replay each order exactly."""
    aug = SimCLRAugment(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=1.0,
        grayscale_p=0.0,
        hue=0.5,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    images = uint8_images(24, 16, 16, seed=34)
    p = aug.sample_params(24, 16, 16, torch.device("cpu"), gen(34))
    p = dataclasses.replace(p, jitter_order=torch.tensor(list(itertools.permutations(range(4)))))
    out = aug.apply(images, p)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    factors = (p.brightness, p.contrast, p.saturation, p.hue)
    for i in range(24):
        img = TF.to_dtype(images[i], torch.float32, scale=True)
        for op_id in p.jitter_order[i].tolist():
            img = ops[op_id](img, float(factors[op_id][i]))
        torch.testing.assert_close(out[i], img, atol=COLOUR_ATOL, rtol=0, msg=f"order {p.jitter_order[i].tolist()}")


def test_a_blend_with_factor_one_is_exactly_the_identity() -> None:
    """The jitter slots a sample does not use blend with factor 1: that must not move a single bit."""
    x, other = float_images(4, seed=35), float_images(4, seed=36)
    assert torch.equal(_mix(other, x, torch.ones(4, 1, 1, 1)), x)
    assert torch.equal(_mix(other.mean(dim=(1, 2, 3), keepdim=True), x, torch.ones(4, 1, 1, 1)), x)


def test_constants_are_buffers_that_follow_the_module_and_stay_out_of_checkpoints() -> None:
    aug = SimCLRAugment(blur_p=0.5)
    assert aug.state_dict() == {}
    assert {name for name, _ in aug.named_buffers()} >= {"mean", "std"}
    # A cast module draws the same parameters and, as before, normalises in its own dtype.
    images = uint8_images(8, seed=38)
    p32 = aug.sample_params(8, 32, 32, torch.device("cpu"), gen(38))
    out32 = aug.apply(images, p32)
    aug64 = SimCLRAugment(blur_p=0.5).double()
    p64 = aug64.sample_params(8, 32, 32, torch.device("cpu"), gen(38))
    for f in dataclasses.fields(p32):
        assert torch.equal(getattr(p32, f.name), getattr(p64, f.name)), f.name
    out64 = aug64.apply(images, p64)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64, out32.double(), atol=1e-5, rtol=0)
    assert all(b.device.type == "meta" for b in aug.to("meta").buffers())


def test_compiled_apply_is_one_graph_and_matches_eager() -> None:
    """No data-dependent Python in `apply`: torch.compile traces it whole (about 10-20 s on 2 cores)."""
    aug = SimCLRAugment(blur_p=0.5)
    images = uint8_images(8, seed=37)
    p = aug.sample_params(8, 32, 32, torch.device("cpu"), gen(37))
    assert 0 < int(p.blur.sum()) < 8 and 0 < int(p.jitter.sum()) < 8
    compiled = torch.compile(aug.apply, fullgraph=True)
    torch.testing.assert_close(compiled(images, p), aug.apply(images, p), atol=1e-5, rtol=0)
