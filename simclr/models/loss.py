"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simclr.errors import ConfigError
from simclr.models.collectives import gather_with_grad, rank, world_size


class NTXentLoss(nn.Module):
    """NT-Xent over a batch of positive pairs; every other view in the batch is a negative.

    For 2N embeddings (the two views of N images) each view i is classified among the 2N - 1 others,
    its positive being the other view of the same image, with logits cos(z_i, z_k) / temperature.
    The loss is the mean over all 2N anchors. Logits and softmax are computed in float32 whatever the
    autocast dtype, since bf16's 8-bit mantissa loses the small differences a low temperature amplifies.

    Under DDP with `gather_distributed=True`, N is the global batch: each process's anchors are compared
    with the embeddings of all processes (gathered with gradients), and the mean of the processes'
    losses, which DDP's gradient averaging optimises, equals the loss of one process holding the
    global batch.

    Shape: z1 (n, D), z2 (n, D), view k of image i in row i of zk (n images on this process) ->
    scalar loss, float32 (float64 for float64 inputs).
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"loss.temperature={temperature} must be > 0 (SimCLR uses 0.1-1.0; 0.5 for CIFAR-10)")
        self.temperature = float(temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.dim() != 2:
            shapes = f"{tuple(z1.shape)} and {tuple(z2.shape)}"
            raise ValueError(f"NT-Xent needs two (N, D) tensors of one shape, got {shapes}")
        n = z1.shape[0]
        with torch.autocast(device_type=z1.device.type, enabled=False):
            # float32 at least: bf16/fp16 inputs are promoted, float64 (gradcheck) stays float64.
            dtype = torch.promote_types(z1.dtype, torch.float32)
            z1, z2 = F.normalize(z1.to(dtype), dim=1), F.normalize(z2.to(dtype), dim=1)
            distributed = self.gather_distributed and world_size() > 1
            all1, all2 = (gather_with_grad(z1), gather_with_grad(z2)) if distributed else (z1, z2)
            total = all1.shape[0]  # images in the global batch
            mine = torch.arange(n, device=z1.device) + (rank() * n if distributed else 0)
            anchors = torch.cat([z1, z2])  # (2n, D)
            logits = anchors @ torch.cat([all1, all2]).T / self.temperature  # (2n, 2 * total)
            # An anchor is never its own negative.
            itself = torch.cat([mine, mine + total])
            logits = logits.scatter(1, itself.unsqueeze(1), float("-inf"))
            positives = torch.cat([mine + total, mine])
            return F.cross_entropy(logits, positives)
