"""The reference per-image path (`augmentation.backend=torchvision`): the pipeline, its order, its workers,
and a pretraining run through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from simclr.data.device_batches import DeviceBatches
from simclr.data.per_image_batches import EpochBatchSampler, PerImageBatches, TwoViews
from simclr.views.augment import SimCLRAugment
from simclr.views.torchvision_reference import torchvision_pipeline
from tests.helpers import default_augmentation, uint8_images


def test_identity_settings_give_the_device_paths_normalised_image() -> None:
    """With the whole image cropped and every random op off, both backends give the same tensor."""
    aug = default_augmentation(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    transform = torchvision_pipeline(aug)
    images = uint8_images(4)
    views = torch.stack([transform(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in images])
    expected = SimCLRAugment().normalize(images)
    torch.testing.assert_close(views, expected, atol=1e-5, rtol=0)


def test_pipeline_reads_every_config_key() -> None:
    aug = default_augmentation(crop_scale=[0.3, 0.9], crop_ratio=[0.5, 2.0], flip_p=0.25, jitter_p=0.7, grayscale_p=0.1)
    aug.update(brightness=0.1, contrast=0.2, saturation=0.3, hue=0.05, blur_p=0.4, blur_sigma=[0.2, 1.5])
    steps = torchvision_pipeline(aug).transforms
    crop, flip, jitter, gray, blur = steps[:5]
    assert crop.scale == (0.3, 0.9) and crop.ratio == (0.5, 2.0) and crop.size == (32, 32)
    assert flip.p == 0.25 and jitter.p == 0.7 and gray.p == 0.1 and blur.p == 0.4
    cj = jitter.transforms[0]
    assert (cj.brightness, cj.contrast, cj.saturation, cj.hue) == ((0.9, 1.1), (0.8, 1.2), (0.7, 1.3), (-0.05, 0.05))
    assert blur.transforms[0].sigma == (0.2, 1.5) and blur.transforms[0].kernel_size == (3, 3)
    assert len(torchvision_pipeline(default_augmentation()).transforms) == 6  # blur_p=0: no blur step at all
    assert torchvision_pipeline(default_augmentation(size=24)).transforms[0].size == (24, 24)


@pytest.mark.parametrize("rank, world", [(0, 1), (1, 2)])
def test_sampler_walks_the_device_batches_order(rank: int, world: int) -> None:
    """The two backends see the same images in the same steps: same permutation, same shard, same cut."""
    images, labels = uint8_images(100), torch.arange(100) % 10
    epochs = iter([0, 1])
    order = DeviceBatches(images, labels, batch_size=16, seed=3, rank=rank, world_size=world)
    reference = DeviceBatches(images, labels, batch_size=16, seed=3, rank=rank, world_size=world)
    sampler = EpochBatchSampler(order)
    for _ in epochs:
        sampled = list(sampler)
        assert sampled == [idx.tolist() for _, _, idx in reference]
        assert len(sampled) == len(sampler) == (100 // world) // 16


def test_two_views_are_two_draws_of_one_image() -> None:
    images, labels = uint8_images(8), torch.arange(8)
    data = TwoViews(images, labels, torchvision_pipeline(default_augmentation()))
    torch.manual_seed(0)
    v1, v2, label, index = data[5]
    assert v1.shape == v2.shape == (3, 32, 32) and v1.dtype == torch.float32
    assert int(label) == 5 and int(index) == 5
    assert not torch.equal(v1, v2)


def test_worker_batches_are_seeded_from_the_run_seed() -> None:
    """Workers draw from (seed, rank): the same seed gives the same views, another seed other views."""
    images, labels = uint8_images(64), torch.arange(64) % 10
    transform = torchvision_pipeline(default_augmentation())

    def first_batch(seed: int) -> tuple[torch.Tensor, ...]:
        batches = PerImageBatches(images, labels, transform, batch_size=16, seed=seed, workers=1)
        assert len(batches) == 4
        return next(iter(batches))

    v1, v2, y, idx = first_batch(0)
    assert v1.shape == (16, 3, 32, 32) and torch.equal(y, labels[idx])
    torch.testing.assert_close(first_batch(0)[0], v1, atol=0, rtol=0)
    assert not torch.equal(first_batch(1)[0], v1)


def test_pretraining_through_the_reference_path(ssl_cfg, tmp_path: Path) -> None:
    """train_ssl with backend=torchvision learns the tiny data's classes (kNN well above chance, 0.1)."""
    from simclr.jobs.train_ssl import train_ssl

    with open_dict(ssl_cfg):
        ssl_cfg.augmentation.backend = "torchvision"
        ssl_cfg.augmentation.num_workers = 1
    metrics = train_ssl(ssl_cfg)
    assert metrics["val/knn_top1"] > 0.3
    assert torch.isfinite(torch.tensor(metrics["train/loss_epoch"]))
