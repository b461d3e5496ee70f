"""Optimizers (Adam, SGD, LARS), the learning-rate rule, and the warm-up + cosine schedule."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch import nn

from simclr.config.schema import OPTIMIZERS
from simclr.errors import ConfigError

log = logging.getLogger("simclr")


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), as SimCLR uses it.

    For each parameter in a group with `lars_adapt=True` the update g + wd * w is scaled by
    trust_coefficient * ||w|| / ||g + wd * w|| before momentum. Groups with `lars_adapt=False` (biases and
    norm layers, following SimCLR) take a plain SGD-with-momentum step and no weight decay.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_adapt=True,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim.Optimizer's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["lars_adapt"]:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = group["trust_coefficient"] * w_norm / (d_norm + group["eps"])
                    d = d * torch.where((w_norm > 0) & (d_norm > 0), trust, torch.ones_like(trust))
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(d).detach()
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


# Device types with a fused kernel for torch.optim.Adam, AdamW and SGD in the torch this project pins.
FUSED_DEVICES = frozenset({"cuda", "cpu"})


def _split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights of convs and linears, biases and norm parameters): the latter get no decay or adaptation."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return decay, no_decay


def build_optimizer(model: nn.Module, cfg: dict, lr: float) -> torch.optim.Optimizer:
    """Optimizer named by `cfg.name` over `model`'s parameters, at the already scaled rate `lr`."""
    name = cfg["name"]
    wd = float(cfg.get("weight_decay", 0.0))
    decay, no_decay = _split_decay(model)
    # One fused kernel per step instead of a loop over parameter tensors, where torch has one for the device:
    # on the quick start's 2-core CPU the encoder's Adam step takes 0.9 ms fused against 2.0 ms with foreach.
    devices = {p.device.type for p in decay + no_decay}
    fused = {"fused": True} if len(devices) == 1 and devices <= FUSED_DEVICES else {}
    if cfg.get("exclude_bias_and_norm", False):
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "lars_adapt": False}]
    else:
        groups = [{"params": decay + no_decay}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))), weight_decay=wd, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.get("betas", (0.9, 0.999))), weight_decay=wd, **fused)
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=float(cfg.get("momentum", 0.9)),
            weight_decay=wd,
            nesterov=bool(cfg.get("nesterov", False)),
            **fused,
        )
    if name == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=float(cfg.get("momentum", 0.9)),
            weight_decay=wd,
            trust_coefficient=float(cfg.get("trust_coefficient", 0.001)),
        )
    raise ConfigError(
        f"optimizer.name={name!r} is not known; choose one of {list(OPTIMIZERS)} (optimizer=adam|sgd|lars)"
    )


def schedule_length(trainer: pl.Trainer, warmup_epochs: float) -> tuple[int, int]:
    """(optimizer steps in the whole run, warm-up steps), from what the Trainer will really run.

    The run's length is Lightning's own count (`estimated_stepping_batches`: trainer.max_steps when it
    ends the run first, else max_epochs x batches per epoch after `limit_train_batches`, per process
    under DDP, whatever a resumed run already did); an epoch of warm-up is this process's batches per
    epoch (`num_training_batches`). Refuses what would make the schedule wrong; a warm-up longer than
    the run is kept as asked (a smoke test of a long recipe) but said out loud.
    """
    if trainer.accumulate_grad_batches != 1:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}: accumulating gradients adds no "
            "negatives to NT-Xent (each micro-batch is compared only with itself); remove it and raise "
            "data.batch_size instead, over more devices (trainer.devices) if memory is short"
        )
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ConfigError(
            f"trainer.max_epochs={trainer.max_epochs} and trainer.max_steps={trainer.max_steps} give no end to the "
            "run, and the cosine schedule needs one: set trainer.max_epochs or trainer.max_steps"
        )
    if not math.isfinite(trainer.num_training_batches):
        trainer.fit_loop.setup_data()  # Lightning counted max_steps alone and has not looked at the data yet
    per_epoch = trainer.num_training_batches
    warmup = int(round(warmup_epochs * per_epoch))
    if warmup >= total:
        log.warning(
            "scheduler.warmup_epochs=%s is %d steps (%d per epoch), not shorter than the run's %d steps: the "
            "learning rate only ramps up, to %.0f%% of its peak; lower scheduler.warmup_epochs for a full schedule",
            warmup_epochs,
            warmup,
            per_epoch,
            int(total),
            100 * warmup_cosine(int(total) - 1, int(total), warmup),
        )
    return int(total), warmup


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """Multiplier of the peak rate at optimizer step `step`: linear warm-up from 0, then cosine decay.

    Reaches 1 at `warmup_steps` and `final_fraction` at `total_steps`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
