"""Collectives that keep gradients, and BatchNorm synchronised over processes on any device.

Under DDP each process holds a shard of the global batch. SimCLR needs every embedding of the global
batch as a negative, and the gradient of every process's loss with respect to each embedding must
reach the process that produced it; `gather_with_grad` does both. torch's SyncBatchNorm runs only on
GPUs, so `AnyDeviceSyncBatchNorm` computes the same global statistics with two all-reduces, which
also lets the CPU (gloo) tests check the whole multi-process path against one process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from pytorch_lightning.plugins import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums, over processes, the gradients with respect to each shard."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # noqa: ANN001
        shards = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(shards, x.contiguous())
        return tuple(shards)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        # Every process's loss may depend on this shard: its gradient is the sum of theirs.
        grad = torch.stack(grads)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward pass sums the gradients the same way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of x over all processes (x itself in a single process)."""
    return x if world_size() == 1 else _AllReduceSum.apply(x)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenates x (n, ...) from every process in rank order -> (world_size * n, ...).

    Differentiable: the backward pass sends each process the gradient, summed over all processes'
    losses, of the rows it contributed. Shards must have the same shape on every process.
    A single process gets x back unchanged.
    """
    if world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x))


class AnyDeviceSyncBatchNorm(_BatchNorm):
    """BatchNorm over the union of all processes' batches, on any device (CPU with gloo included).

    Same parameters, buffers and state_dict keys as nn.BatchNorm{1,2,3}d, so checkpoints load into a
    plain network. In training the mean and (biased) variance are computed over every process's
    samples with differentiable all-reduces; running statistics use the unbiased global variance,
    exactly as one process seeing the global batch would.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype)
        total = all_reduce_with_grad(torch.cat([x.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        var = all_reduce_with_grad((x - mean.view(shape)).pow(2).sum(dims)) / n  # two passes: stable in float32
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replaces every BatchNorm layer by AnyDeviceSyncBatchNorm, keeping parameters and buffers."""
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, AnyDeviceSyncBatchNorm):
        converted = AnyDeviceSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        converted.original_class = type(module)
    for name, child in module.named_children():
        converted.add_module(name, convert_sync_batchnorm(child))
    return converted


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """AnyDeviceSyncBatchNorm -> the BatchNorm class it replaced, keeping parameters and buffers."""
    converted = module
    if isinstance(module, AnyDeviceSyncBatchNorm):
        cls = getattr(module, "original_class", nn.BatchNorm2d)
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        converted.load_state_dict(module.state_dict())
    for name, child in module.named_children():
        converted.add_module(name, revert_sync_batchnorm(child))
    return converted


class AnyDeviceSyncBatchNormPlugin(LayerSync):
    """Lightning plugin (`trainer.plugins`) that synchronises BatchNorm with AnyDeviceSyncBatchNorm.

    Lightning's own `sync_batchnorm=True` uses torch.nn.SyncBatchNorm, which needs GPUs; this plugin
    is what the CPU multi-process trainer (`trainer=ddp_sim`) uses instead.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return revert_sync_batchnorm(model)
