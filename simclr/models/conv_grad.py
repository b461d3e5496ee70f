"""Weight gradients of small CPU convolutions as one matrix product.

oneDNN's weight-gradient kernels (AMX bf16 and AVX-512 float32 alike) run far below the machine's matmul
speed when a convolution's output map is small: for ResNet "tiny" at width 32 on 20 x 20 views (batch 256),
the last stage's 3x3 convolution (256 channels, 3 x 3 positions) takes 11.9 ms for its weight gradient
against 1.7 ms for its forward pass on the 2-core Xeon (docs/benchmarks.md, "Levers tried"). The same
gradient written as patches @ output-gradient, one bf16 matmul over batch x positions, takes 3.2 ms.
`convert_small_convs` swaps such layers for `MatmulGradConv2d`, which keeps oneDNN for the forward pass and
the input gradient and computes only the weight gradient this way. Parameters and state_dict keys do not
change, so checkpoints load either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Output positions (Ho * Wo) at or under which the matmul wins on the Xeon measured: maps of 5 x 5 and smaller
# gained 0.9-8.7 ms a layer, a 10 x 10 map with 64 channels lost 3.9 ms (docs/benchmarks.md).
MAX_POSITIONS = 25


def weight_grad(images: torch.Tensor, grad_out: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """The gradient of a square convolution (no groups, no dilation) with respect to its weight.

    Shapes: images (B, C_in, H, W), grad_out (B, C_out, Ho, Wo), either memory format ->
    (C_out, C_in, kernel, kernel), in grad_out's dtype (a bf16 matmul accumulates in float32).
    """
    c_out, ho, wo = grad_out.shape[1:]
    nhwc = images.permute(0, 2, 3, 1)
    if padding:
        nhwc = F.pad(nhwc, (0, 0, padding, padding, padding, padding))
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    # (B, Ho, Wo, k*k, C_in): the input under each kernel tap, strided as the convolution reads it.
    taps = [nhwc[:, i : i + span_h : stride, j : j + span_w : stride] for i in range(kernel) for j in range(kernel)]
    patches = torch.stack(taps, dim=3).reshape(-1, kernel * kernel * images.shape[1])
    rows = grad_out.permute(0, 2, 3, 1).reshape(-1, c_out)  # (B * Ho * Wo, C_out)
    grad = rows.t() @ patches  # (C_out, k * k * C_in)
    return grad.reshape(c_out, kernel, kernel, -1).permute(0, 3, 1, 2)


class _MatmulGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, weight, stride, padding):  # type: ignore[override]
        ctx.save_for_backward(images, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(images, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        images, weight = ctx.saved_tensors
        grad_images = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_images = torch.nn.grad.conv2d_input(images.shape, weight, grad_out, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad(images, grad_out, weight.shape[-1], ctx.stride, ctx.padding)
        return grad_images, grad_weight, None, None


class MatmulGradConv2d(nn.Conv2d):
    """nn.Conv2d whose weight gradient, on the CPU for output maps of at most MAX_POSITIONS positions,
    is one matmul (module docstring); elsewhere (GPU, larger maps, no gradient) it is nn.Conv2d.

    Bias-free, square, ungrouped, undilated convolutions only (`convert_small_convs` picks them).
    Under CPU autocast the images and weight are cast to the autocast dtype, as nn.Conv2d's are.
    Shape: (B, C_in, H, W) -> (B, C_out, Ho, Wo).
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self._takes_matmul_path(images):
            return super().forward(images)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else images.dtype
        with torch.autocast("cpu", enabled=False):
            return _MatmulGradConv.apply(images.to(dtype), self.weight.to(dtype), self.stride[0], self.padding[0])

    def _takes_matmul_path(self, images: torch.Tensor) -> bool:
        if images.device.type != "cpu" or not (torch.is_grad_enabled() and self.weight.requires_grad):
            return False
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        ho, wo = ((n + 2 * p - k) // s + 1 for n in images.shape[-2:])
        return ho * wo <= MAX_POSITIONS

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> MatmulGradConv2d:
        """The same layer, sharing `conv`'s weight Parameter."""
        # skip_init: no initialisation of a weight about to be replaced, so no draw from the global generator
        # (a seed gives the same network with and without the conversion).
        args = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        new = torch.nn.utils.skip_init(cls, *args, bias=False, device=conv.weight.device)
        new.weight = conv.weight
        return new


def _convertible(conv: nn.Conv2d) -> bool:
    square = conv.kernel_size[0] == conv.kernel_size[1] and conv.stride[0] == conv.stride[1]
    plain = conv.groups == 1 and conv.dilation == (1, 1) and conv.bias is None and conv.padding_mode == "zeros"
    return square and plain and isinstance(conv.padding, tuple) and conv.padding[0] == conv.padding[1]


def convert_small_convs(module: nn.Module) -> nn.Module:
    """Replace every plain nn.Conv2d in `module` (in place) by a MatmulGradConv2d sharing its weight.

    Which of them take the matmul path is decided per call by the size of their output map, so the
    same module trains at any view size. Returns `module`.
    """
    for name, child in module.named_children():
        if type(child) is nn.Conv2d and _convertible(child):
            setattr(module, name, MatmulGradConv2d.from_conv(child))
        else:
            convert_small_convs(child)
    return module
