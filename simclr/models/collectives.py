"""Collectives that keep gradients.

Under DDP each process holds a shard of the global batch. SimCLR needs every embedding of the global
batch as a negative, and the gradient of every process's loss with respect to each embedding must
reach the process that produced it; `gather_with_grad` does both (torch.distributed's all_gather
returns tensors without a gradient path). Written here because no maintained library exposes it for
plain torch.distributed; lightly's `utils/dist.py` is the same algorithm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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
