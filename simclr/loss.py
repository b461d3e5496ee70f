"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020, eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simclr.errors import ConfigError


class NTXentLoss(nn.Module):
    """NT-Xent over a batch of positive pairs; every other view in the batch is a negative.

    For 2N embeddings (the two views of N images) each view i is classified among the 2N - 1 others,
    its positive being the other view of the same image, with logits cos(z_i, z_k) / temperature.
    The loss is the mean over all 2N anchors. Logits and softmax are computed in float32 whatever the
    autocast dtype, since bf16's 8-bit mantissa loses the small differences a low temperature amplifies.

    Shape: z1 (N, D), z2 (N, D), view k of image n in row n of zk -> scalar loss, float32 (float64 for
    float64 inputs).
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"loss.temperature={temperature} must be > 0 (SimCLR uses 0.1-1.0; 0.5 for CIFAR-10)")
        self.temperature = float(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.shape != z2.shape or z1.dim() != 2:
            raise ValueError(
                f"NT-Xent needs two (N, D) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
            )
        n = z1.shape[0]
        with torch.autocast(device_type=z1.device.type, enabled=False):
            # float32 at least: bf16/fp16 inputs are promoted, float64 (gradcheck) stays float64.
            z = torch.cat([z1, z2])
            z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)
            logits = z @ z.T / self.temperature
            # An anchor is never its own negative.
            logits.fill_diagonal_(float("-inf"))
            targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
            return F.cross_entropy(logits, targets)
