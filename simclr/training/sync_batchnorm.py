"""BatchNorm whose statistics cover the global batch, on any device.

torch's SyncBatchNorm runs only on GPUs; `AnyDeviceSyncBatchNorm` computes the same global mean and
variance with two all-reduces that keep gradients (`simclr.models.collectives`), so the CPU (gloo) tests
check the multi-process path against one process. `AnyDeviceSyncBatchNormPlugin` is the Lightning
plugin that converts a model's BatchNorm layers; `batchnorm_sync` chooses it for `trainer.sync_batchnorm=true`
on a CPU, where Lightning's own choice (torch's SyncBatchNorm) would fail at the first step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from pytorch_lightning.plugins import LayerSync
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from simclr.config.derived import runs_on_cpu
from simclr.models.collectives import all_reduce_with_grad, world_size


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


class BatchNormSync(NamedTuple):
    """How BatchNorm statistics are synchronised: Trainer(sync_batchnorm=...) and the plugin that does it."""

    sync_batchnorm: bool  # Lightning's flag: torch.nn.SyncBatchNorm (GPUs only)
    plugin: AnyDeviceSyncBatchNormPlugin | None
    why: str  # one phrase, logged


def batchnorm_sync(trainer_cfg: Any) -> BatchNormSync:
    """`trainer.sync_batchnorm=true`: torch's SyncBatchNorm on GPUs, AnyDeviceSyncBatchNorm on the CPU (the
    same statistics; torch's raises a ValueError there at the first step)."""
    asked = bool(trainer_cfg.get("sync_batchnorm", False))
    if asked and runs_on_cpu(trainer_cfg):
        return BatchNormSync(False, AnyDeviceSyncBatchNormPlugin(), "AnyDeviceSyncBatchNorm (sync_batchnorm on a CPU)")
    return BatchNormSync(asked, None, "torch.nn.SyncBatchNorm" if asked else "none (sync_batchnorm=false)")
