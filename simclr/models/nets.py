"""Encoders (ResNet with the CIFAR stem) and the SimCLR projection head."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from simclr.config.schema import OutputNorm, choices
from simclr.errors import ConfigError

# Blocks per stage of each choice of model.arch (simclr.config.schema.Arch); `resnet_tiny` halves ResNet-18's depth.
ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet_tiny": (BasicBlock, (1, 1, 1, 1)),
}


class CifarResNet(nn.Module):
    """torchvision's ResNet with the CIFAR stem: 3x3 conv, stride 1, no max-pool.

    Module names match torchvision's (`conv1`, `bn1`, `layer1`..`layer4`), so a width-64 network
    holds exactly the parameters of `torchvision.models.resnetXX` minus the stem conv and `fc`.

    Shape: images (B, 3, H, W) float -> features (B, feature_dim), taken after global average pooling.
    """

    def __init__(self, arch: str = "resnet18", width: int = 64, zero_init_residual: bool = False) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ConfigError(f"model.arch={arch!r} is not known; choose one of {sorted(ARCHITECTURES)}")
        if width < 1:
            raise ConfigError(f"model.width={width} must be a positive number of channels (64 = torchvision)")
        block, layers = ARCHITECTURES[arch]
        self.arch, self.width = arch, width
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * width * block.expansion
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # Same initialisation as torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class ScaleBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm with a learnt scale and no shift: the official SimCLR code's output normalisation
    (TensorFlow's `BatchNormalization(center=False)`). Its only parameter is `weight`, initialised to 1.

    Shape: (B, C) -> (B, C).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False)
        self.weight = nn.Parameter(torch.ones(num_features))  # F.batch_norm takes a weight without a bias


class ProjectionHead(nn.Module):
    """SimCLR's MLP head: (Linear -> BN -> ReLU) x (num_layers - 1) -> Linear -> output norm.

    Args:
        in_dim: encoder feature width. hidden_dim, out_dim: widths of the hidden and output layers.
        num_layers: linear layers (2: SimCLR v1's MLP; 3: SimCLR v2's; 1: a linear head).
        batch_norm: BatchNorm1d after each hidden linear layer (then the layer has no bias).
        output_norm: BatchNorm1d on the output, as the reference implementations build it:
            "affine" (scale and shift; lightly), "scale" (scale only; the official SimCLR code),
            "none" (a linear output with bias, the v1 paper's head). With a norm the output layer has
            no bias: the norm would cancel it.

    Shape: features (B, in_dim) -> projections (B, out_dim).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 2048,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
        output_norm: str = "affine",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"model.head.num_layers={num_layers} must be >= 1")
        if output_norm not in choices(OutputNorm):
            raise ConfigError(f"model.head.output_norm={output_norm!r} is not one of {choices(OutputNorm)}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=output_norm == "none"))
        if output_norm == "affine":
            layers.append(nn.BatchNorm1d(out_dim))
        elif output_norm == "scale":
            layers.append(ScaleBatchNorm1d(out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(arch: str, width: int = 64, zero_init_residual: bool = False, **_: object) -> CifarResNet:
    """Encoder from the `model` config group (extra keys such as `head` are ignored here)."""
    return CifarResNet(arch=arch, width=width, zero_init_residual=zero_init_residual)
