"""Small convolutions' weight gradients as one matmul: equal to torch's, and only where they are meant to run."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simclr.models.conv_grad import MAX_POSITIONS, MatmulGradConv2d, convert_small_convs, weight_grad
from simclr.models.nets import CifarResNet
from simclr.training.pretrain import SimCLRModule


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (1, 2), (1, 1)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_weight_grad_equals_torch(kernel: int, stride: int, channels_last: bool) -> None:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    padding = kernel // 2
    images = torch.randn(4, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=fmt)
    weight = torch.randn(3, 5, kernel, kernel, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(images, weight, stride=stride, padding=padding)
    grad_out = torch.randn_like(out).contiguous(memory_format=fmt)
    (expected,) = torch.autograd.grad(out, weight, grad_out)
    got = weight_grad(images, grad_out, kernel, stride, padding)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def grads(model: nn.Module, images: torch.Tensor, autocast: bool) -> dict[str, torch.Tensor]:
    """Gradients of every parameter, and of the images, for a sum of squared features."""
    images = images.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        features = model(images)
    features.float().pow(2).sum().backward()
    return {"images": images.grad, **{n: p.grad for n, p in model.named_parameters()}}


@pytest.mark.parametrize("channels_last", [True, False])
def test_converted_encoder_gets_torchs_gradients(channels_last: bool) -> None:
    # 12 x 12 images: the last two stages have maps of 3 x 3 and 2 x 2 (matmul), the first two 12 x 12 and
    # 6 x 6 (torch's kernels), so both paths and the hand-over between them are exercised.
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    plain = CifarResNet("resnet_tiny", 4).double().to(memory_format=fmt)
    converted = convert_small_convs(copy.deepcopy(plain))
    images = torch.randn(6, 3, 12, 12, dtype=torch.float64).contiguous(memory_format=fmt)
    expected, got = grads(plain, images, autocast=False), grads(converted, images, autocast=False)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-10, atol=1e-12, msg=name)


def test_converted_encoder_under_bf16_autocast_is_as_close_as_bf16_allows() -> None:
    torch.manual_seed(0)
    plain = CifarResNet("resnet_tiny", 8).to(memory_format=torch.channels_last)
    converted = convert_small_convs(copy.deepcopy(plain))
    images = torch.randn(16, 3, 20, 20).contiguous(memory_format=torch.channels_last)
    expected, got = grads(plain, images, autocast=True), grads(converted, images, autocast=True)
    for name in expected:
        assert got[name].dtype == expected[name].dtype == torch.float32
        scale = expected[name].abs().max()
        assert (got[name] - expected[name]).abs().max() <= 1e-2 * scale, name


def backward_node(conv: nn.Conv2d, side: int) -> str:
    images = torch.randn(2, conv.in_channels, side, side, requires_grad=True)  # a graph even for a frozen layer
    return type(conv(images).grad_fn).__name__


def test_matmul_path_only_for_small_maps_with_a_gradient() -> None:
    conv = MatmulGradConv2d(4, 4, 3, stride=1, padding=1, bias=False)
    small = int(MAX_POSITIONS**0.5)  # a small x small output map: at the limit
    assert "MatmulGradConv" in backward_node(conv, small)
    assert "MatmulGradConv" not in backward_node(conv, small + 1)  # torch's ConvolutionBackward
    with torch.no_grad():
        assert conv(torch.randn(2, 4, small, small)).grad_fn is None
    conv.weight.requires_grad_(False)  # a frozen encoder (the probe) takes torch's path
    assert "MatmulGradConv" not in backward_node(conv, small)


def test_forward_is_torchs() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    images = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(MatmulGradConv2d.from_conv(conv)(images), conv(images), rtol=0, atol=0)


def test_conversion_keeps_parameters_and_state_dict_keys() -> None:
    model = CifarResNet("resnet_tiny", 4)
    before = dict(model.named_parameters())
    keys = list(model.state_dict())
    convert_small_convs(model)
    assert list(model.state_dict()) == keys
    assert all(p is before[n] for n, p in model.named_parameters())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is MatmulGradConv2d for m in convs)


def test_conversion_leaves_convolutions_it_cannot_compute_alone() -> None:
    odd = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False),
        nn.Conv2d(4, 4, 3, padding=1, bias=True),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False),
        nn.Conv2d(4, 4, (3, 1), padding=(1, 0), bias=False),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", bias=False),
    )
    convert_small_convs(odd)
    assert all(type(m) is nn.Conv2d for m in odd)


def pretrain_module(matmul_weight_grad: bool) -> SimCLRModule:
    torch.manual_seed(0)
    model = dict(
        arch="resnet_tiny", width=4, matmul_weight_grad=matmul_weight_grad, head=dict(hidden_dim=32, out_dim=16)
    )
    return SimCLRModule(model, {}, dict(name="adam"), dict(temperature=0.5), {}, dict(k=5, temperature=0.1), lr=1e-3)


def test_pretraining_module_converts_its_encoder_only_when_asked() -> None:
    on, off = pretrain_module(True), pretrain_module(False)
    assert {type(m) for m in on.encoder.modules() if isinstance(m, nn.Conv2d)} == {MatmulGradConv2d}
    assert {type(m) for m in off.encoder.modules() if isinstance(m, nn.Conv2d)} == {nn.Conv2d}
    assert on.state_dict().keys() == off.state_dict().keys()
    # One float32 step on 16 x 16 images (the last two stages' maps take the matmul): the same loss and gradients.
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=gen)
    first, second = (on.augment.sample_params(8, 16, 16, torch.device("cpu"), gen) for _ in range(2))
    for module in (on, off):
        module.views_loss(images, first, second).backward()
    for (name, p_on), p_off in zip(on.named_parameters(), off.parameters(), strict=True):
        torch.testing.assert_close(p_on.grad, p_off.grad, rtol=1e-4, atol=1e-6, msg=name)
