"""CifarResNet (torchvision ResNets with the CIFAR stem), ProjectionHead and build_encoder."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from simclr.errors import ConfigError
from simclr.models.nets import CifarResNet, ProjectionHead, ScaleBatchNorm1d, build_encoder

STAGES = ("layer1", "layer2", "layer3", "layer4")


def images(b: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(0))


def param_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def buffer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(b.shape) for name, b in model.named_buffers()}


@pytest.mark.parametrize(
    "arch, width, feature_dim",
    [
        ("resnet18", 64, 512),
        ("resnet34", 64, 512),
        ("resnet50", 64, 2048),
        ("resnet_tiny", 16, 128),
        ("resnet_tiny", 4, 32),
        ("resnet18", 8, 64),
    ],
)
def test_output_shape_is_batch_by_feature_dim(arch: str, width: int, feature_dim: int) -> None:
    model = CifarResNet(arch, width).eval()
    assert model.feature_dim == feature_dim
    with torch.no_grad():
        out = model(images(2))
    assert out.shape == (2, feature_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet_tiny"])
def test_stem_is_a_3x3_stride_1_conv_without_max_pool(arch: str) -> None:
    model = CifarResNet(arch, 8)
    assert isinstance(model.conv1, nn.Conv2d)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.padding == (1, 1)
    assert model.conv1.in_channels == 3 and model.conv1.out_channels == 8
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert not hasattr(model, "maxpool") and not hasattr(model, "fc")


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_width_64_has_torchvisions_parameters_except_stem_and_fc(arch: str) -> None:
    ours = param_shapes(CifarResNet(arch, 64))
    tv_model = getattr(torchvision.models, arch)(weights=None)
    theirs = param_shapes(tv_model)
    assert theirs.pop("conv1.weight") == (64, 3, 7, 7)
    assert ours.pop("conv1.weight") == (64, 3, 3, 3)
    theirs = {k: v for k, v in theirs.items() if not k.startswith("fc.")}
    assert ours == theirs
    tv_buffers = {k: v for k, v in buffer_shapes(tv_model).items() if not k.startswith("fc.")}
    assert buffer_shapes(CifarResNet(arch, 64)) == tv_buffers


def test_tiny_has_one_block_per_stage() -> None:
    model = CifarResNet("resnet_tiny", 16)
    assert [len(getattr(model, s)) for s in STAGES] == [1, 1, 1, 1]
    assert [len(getattr(CifarResNet("resnet34", 4), s)) for s in STAGES] == [3, 4, 6, 3]


@pytest.mark.parametrize("arch, width", [("resnet18", 8), ("resnet50", 32), ("resnet_tiny", 16)])
def test_32x32_input_reaches_layer4_at_4x4(arch: str, width: int) -> None:
    model = CifarResNet(arch, width).eval()
    sizes: dict[str, tuple[int, ...]] = {}
    hooks = [
        getattr(model, s).register_forward_hook(lambda _m, _i, out, s=s: sizes.__setitem__(s, out.shape))
        for s in STAGES
    ]
    with torch.no_grad():
        out = model(images(2, 32))
    for h in hooks:
        h.remove()
    c = width * (4 if arch == "resnet50" else 1)
    assert sizes == {
        "layer1": (2, c, 32, 32),
        "layer2": (2, 2 * c, 16, 16),
        "layer3": (2, 4 * c, 8, 8),
        "layer4": (2, 8 * c, 4, 4),
    }
    assert out.shape == (2, 8 * c) and model.feature_dim == 8 * c


def test_features_are_global_average_pooled_layer4() -> None:
    model = CifarResNet("resnet_tiny", 4).eval()
    captured = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: captured.__setitem__("out", out))
    with torch.no_grad():
        feats = model(images(3))
    torch.testing.assert_close(feats, captured["out"].mean(dim=(2, 3)))


def test_other_input_sizes_work() -> None:
    model = CifarResNet("resnet_tiny", 4).eval()
    with torch.no_grad():
        assert model(images(2, 64)).shape == (2, 32)
        assert model(images(2, 8)).shape == (2, 32)


def test_zero_init_residual_zeroes_the_last_bn_of_each_block() -> None:
    basic = CifarResNet("resnet_tiny", 4, zero_init_residual=True)
    assert all((b.bn2.weight == 0).all() for s in STAGES for b in getattr(basic, s))
    bottleneck = CifarResNet("resnet50", 4, zero_init_residual=True)
    assert all((b.bn3.weight == 0).all() for s in STAGES for b in getattr(bottleneck, s))
    default = CifarResNet("resnet_tiny", 4)
    assert all((b.bn2.weight == 1).all() for s in STAGES for b in getattr(default, s))


def test_gradients_reach_the_stem() -> None:
    model = CifarResNet("resnet_tiny", 4)
    model(images(4)).sum().backward()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0


# ---- projection head ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_layers, batch_norm, linears, norms, relus",
    [(1, True, 1, 0, 0), (2, True, 2, 1, 1), (3, True, 3, 2, 2), (2, False, 2, 0, 1), (3, False, 3, 0, 2)],
)
def test_projection_head_layers(num_layers: int, batch_norm: bool, linears: int, norms: int, relus: int) -> None:
    head = ProjectionHead(
        32, hidden_dim=24, out_dim=8, num_layers=num_layers, batch_norm=batch_norm, output_norm="none"
    )
    kinds = [type(m) for m in head.net]
    assert kinds.count(nn.Linear) == linears
    assert kinds.count(nn.BatchNorm1d) == norms
    assert kinds.count(nn.ReLU) == relus
    assert len(kinds) == linears + norms + relus
    assert kinds[-1] is nn.Linear  # output_norm="none": the v1 paper's linear output
    lin = [m for m in head.net if isinstance(m, nn.Linear)]
    assert lin[0].in_features == 32 and lin[-1].out_features == 8
    assert all(m.out_features == 24 for m in lin[:-1]) and all(m.in_features == 24 for m in lin[1:])
    # A Linear directly followed by BatchNorm needs no bias.
    assert all((m.bias is None) == batch_norm for m in lin[:-1])
    assert lin[-1].bias is not None


@pytest.mark.parametrize(
    "output_norm, norm_type, params", [("affine", nn.BatchNorm1d, 2), ("scale", ScaleBatchNorm1d, 1)]
)
def test_projection_head_output_norm(output_norm: str, norm_type: type, params: int) -> None:
    """The reference implementations' output: Linear without bias, then BatchNorm (affine, or scale only)."""
    head = ProjectionHead(32, hidden_dim=24, out_dim=8, output_norm=output_norm)
    out_linear, out_norm = head.net[-2], head.net[-1]
    assert isinstance(out_linear, nn.Linear) and out_linear.bias is None
    assert type(out_norm) is norm_type and out_norm.num_features == 8
    assert len(list(out_norm.parameters())) == params
    z = head(torch.randn(64, 32) * 3 + 1)
    # In training mode each output coordinate is standardised over the batch (scale 1, shift 0 at init).
    torch.testing.assert_close(z.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    z.sum().backward()
    assert out_norm.weight.grad is not None


def test_scale_batch_norm_has_no_shift_and_learns_its_scale() -> None:
    norm = ScaleBatchNorm1d(4)
    assert norm.bias is None and [n for n, _ in norm.named_parameters()] == ["weight"]
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    z = norm(torch.randn(256, 4, generator=torch.Generator().manual_seed(0)) + 5)
    # No shift: centred, up to float32 rounding of inputs near 5 times scales up to 4 (1.0e-5 was seen unseeded).
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=5e-5, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.tensor([1.0, 2.0, 3.0, 4.0]), atol=1e-3, rtol=0)
    assert set(norm.state_dict()) == {"weight", "running_mean", "running_var", "num_batches_tracked"}


def test_unknown_output_norm_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="model.head.output_norm='layer'"):
        ProjectionHead(32, 16, 8, output_norm="layer")


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_projection_head_output_shape(num_layers: int) -> None:
    head = ProjectionHead(32, hidden_dim=24, out_dim=8, num_layers=num_layers)
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 8)


def test_projection_head_defaults_are_simclrs() -> None:
    head = ProjectionHead(512)
    lin = [m for m in head.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(512, 2048), (2048, 128)]


def test_projection_head_on_encoder_features() -> None:
    encoder = CifarResNet("resnet_tiny", 4)
    head = ProjectionHead(encoder.feature_dim, 16, 8)
    assert head(encoder(images(3))).shape == (3, 8)


# ---- build_encoder and config errors --------------------------------------------------------


def test_build_encoder_ignores_extra_config_keys() -> None:
    cfg = {
        "arch": "resnet_tiny",
        "width": 8,
        "zero_init_residual": True,
        "channels_last": True,
        "head": {"hidden_dim": 256, "out_dim": 128, "num_layers": 2, "batch_norm": True},
    }
    model = build_encoder(**cfg)
    assert isinstance(model, CifarResNet)
    assert model.arch == "resnet_tiny" and model.width == 8 and model.feature_dim == 64
    assert (model.layer1[0].bn2.weight == 0).all()


@pytest.mark.parametrize("arch", ["resnet101", "ResNet18", "", "vit"])
def test_unknown_arch_raises_config_error(arch: str) -> None:
    with pytest.raises(ConfigError):
        CifarResNet(arch)
    with pytest.raises(ConfigError):
        build_encoder(arch=arch)


@pytest.mark.parametrize("width", [0, -4])
def test_non_positive_width_raises_config_error(width: int) -> None:
    with pytest.raises(ConfigError):
        CifarResNet("resnet_tiny", width)
    with pytest.raises(ConfigError):
        build_encoder(arch="resnet18", width=width)


@pytest.mark.parametrize("num_layers", [0, -1])
def test_head_with_no_layers_raises_config_error(num_layers: int) -> None:
    with pytest.raises(ConfigError):
        ProjectionHead(32, 16, 8, num_layers=num_layers)
