"""Collectives that keep gradients, from torch's functional collectives.

Under DDP each process holds a shard of the global batch. SimCLR needs every embedding of the global
batch as a negative, and the gradient of every process's loss with respect to each embedding must
reach the process that produced it: `gather_with_grad` does both. `all_reduce_with_grad` is the
differentiable sum that `simclr.training.sync_batchnorm` builds global BatchNorm statistics from.

Both are torch's own ops (`torch.distributed._functional_collectives`, which the deprecation of
`torch.distributed.nn.functional` points to), with the backward passes torch registers for them: the
all-gather's is a reduce-scatter (each process receives only the sum of the gradients with respect to
its own rows), the sum all-reduce's an all-reduce of the gradient. Nothing here is an
autograd.Function: under `torch.compile` the collectives and their backward passes are torch's ops in the
step's graph (the old Function traced into one graph too, in torch 2.14; its backward sent more bytes).

Gloo is the exception for the gather: its reduce-scatter is an all-reduce of the whole gradient
followed by a copy of one chunk (ProcessGroupGloo::reduce_scatter_tensor_coalesced), so on gloo the
gather is written as an all-to-all of W copies of the shard, whose backward, also torch's, is an
all-to-all that sends each process only its rows. benchmarks/collective_bytes.py counts the bytes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.compiler.assume_constant_result
def _gloo_serves(device_type: str) -> bool:
    """Whether the default group runs collectives on `device_type` tensors with gloo.

    `get_backend_config` reads "gloo", "nccl" or "cpu:gloo,cuda:nccl"; torch.compile takes the answer
    as a constant (it holds for the process group the step was compiled under).
    """
    config = dist.get_backend_config()
    backends = dict(part.split(":") for part in config.split(",")) if ":" in config else {device_type: config}
    return backends.get(device_type) == "gloo"


def _gather_by_all_to_all(x: torch.Tensor) -> torch.Tensor:
    """all-gather as an all-to-all that sends x to every process; its backward returns each process its rows.

    Measured on gloo (torch 2.14.1, CPU, 2-4 processes; benchmarks/collective_bytes.py): torch's
    all_gather_single_autograd works there, forward and backward, no exception, but its backward,
    reduce_scatter_tensor, sends 2 (W - 1) n d b bytes a process, as many as the all-reduce of every
    shard's gradient it was meant to replace, because gloo implements reduce-scatter as an all-reduce of
    the whole (W n, d) gradient. This all-to-all sends (W - 1) n d b bytes forward and backward alike.
    """
    copies = x.repeat(world_size(), *([1] * (x.dim() - 1)))
    return funcol.all_to_all_single_autograd(copies, None, None, dist.group.WORLD)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenates x (n, ...) from every process in rank order -> (world_size * n, ...).

    Differentiable: the backward pass sends each process the gradient, summed over all processes'
    losses, of the rows it contributed. Shards must have the same shape on every process.
    A single process gets x back unchanged.
    """
    if world_size() == 1:
        return x
    x = x.contiguous()
    if _gloo_serves(x.device.type):
        gathered = _gather_by_all_to_all(x)
    else:
        gathered = funcol.all_gather_single_autograd(x, 0, dist.group.WORLD)
    return funcol.wait_tensor(gathered)  # a plain tensor, not torch's AsyncCollectiveTensor wrapper


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of x over all processes (x itself in a single process).

    The backward pass torch registers for a "sum" all-reduce all-reduces the gradient (sum): each
    process's x reaches every process's loss through the sum.
    """
    if world_size() == 1:
        return x
    return funcol.wait_tensor(funcol.all_reduce(x, "sum", dist.group.WORLD))


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenates x (n, ...) from every process in rank order -> (world_size * n, ...), without a gradient
    path: evaluation features, generator states. x itself in a single process.

    LightningModule.all_gather would do the same through `torch.distributed.nn.functional.all_gather`, which
    torch 2.14 deprecates (a FutureWarning at every call).
    """
    if world_size() == 1:
        return x
    return funcol.wait_tensor(funcol.all_gather_tensor(x.contiguous(), 0, dist.group.WORLD))
