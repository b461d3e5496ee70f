"""The one feature extractor: dataset order, eval mode, no gradients, modes restored, any batching."""

from __future__ import annotations

import torch
from torch import nn

from simclr.evaluation.features import extract_features
from simclr.models.nets import CifarResNet
from simclr.views.augment import SimCLRAugment


def _encoder() -> CifarResNet:
    torch.manual_seed(0)
    encoder = CifarResNet("resnet_tiny", width=4)
    with torch.no_grad():  # BatchNorm statistics far from the batch's: train and eval mode differ
        for m in encoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return encoder


def test_features_are_per_image_in_order_and_in_eval_mode() -> None:
    encoder = _encoder().train()
    encoder.layer1.eval()  # a mixed state, restored as it was
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    normalize = SimCLRAugment().normalize
    feats = extract_features(encoder, images, normalize=normalize, batch_size=3)
    assert feats.shape == (10, encoder.feature_dim) and feats.dtype == torch.float32 and not feats.requires_grad
    encoder.eval()
    with torch.no_grad():
        alone = torch.cat([encoder(normalize(images[i : i + 1])) for i in range(10)])
    torch.testing.assert_close(feats, alone, rtol=1e-5, atol=1e-5)  # BatchNorm used running statistics
    encoder.train()
    encoder.layer1.eval()
    with torch.no_grad():
        assert not torch.allclose(encoder(normalize(images)), alone, atol=1e-3)  # train mode would differ


def test_modes_are_restored_and_batches_may_be_tuples() -> None:
    encoder = _encoder().train()
    encoder.layer1.eval()
    before = {name: m.training for name, m in encoder.named_modules()}
    images = torch.randn(7, 3, 32, 32)
    from_tensor = extract_features(encoder, images, batch_size=4)
    batches = [(images[:2], torch.zeros(2), torch.arange(2)), (images[2:], torch.zeros(5), torch.arange(2, 7))]
    from_tuples = extract_features(encoder, batches)
    assert {name: m.training for name, m in encoder.named_modules()} == before
    torch.testing.assert_close(from_tensor, from_tuples)
    assert extract_features(encoder, []).shape == (0, encoder.feature_dim)


def test_flip_average_is_the_mean_of_both_orientations_and_mirror_invariant() -> None:
    encoder = _encoder().eval()
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        expected = (encoder(images) + encoder(images.flip(-1))) / 2
    averaged = extract_features(encoder, images, batch_size=4, flip_average=True)
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-5)
    mirrored = extract_features(encoder, images.flip(-1), batch_size=4, flip_average=True)
    torch.testing.assert_close(mirrored, averaged, rtol=1e-5, atol=1e-5)
    # An encoder that is not itself mirror-invariant: the plain features of the mirror image differ.
    assert not torch.allclose(extract_features(encoder, images.flip(-1)), extract_features(encoder, images), atol=1e-3)
