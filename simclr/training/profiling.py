"""Counting what a piece of code asks of the device: compute ops, and host-device synchronisations.

A GPU runs a 32 x 32 SimCLR step fastest when the CPU can queue kernels far ahead of it. Two things
break that: many tiny kernels (each launch costs a few microseconds of CPU time whatever its size) and
any operation whose result the CPU must wait for (`.item()`, `nonzero`, a tensor built from host data).
`DispatchRecorder` sees every aten op a block of code dispatches, on any device, so both can be
counted on a CPU-only machine: what it records on the CPU is what the same code launches on a GPU.
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops whose result size or value the host must know: on a GPU each one blocks the CPU until the
# device has caught up. `lift_fresh` marks a tensor made from host data (torch.tensor([...])), which
# on a GPU is a blocking host-to-device copy when it happens inside the step.
SYNC_OPS = {
    aten._local_scalar_dense.default: "read a value on the host (.item(), float(), bool() or int() of a tensor)",
    aten.nonzero.default: "nonzero() (output size depends on the data)",
    aten.masked_select.default: "masked_select (output size depends on the data)",
    aten._unique2.default: "unique (output size depends on the data)",
    aten.unique_dim.default: "unique (output size depends on the data)",
    aten.unique_consecutive.default: "unique_consecutive (output size depends on the data)",
    aten.lift_fresh.default: "a tensor built from host data (torch.tensor(...)) inside the step",
    aten.equal.default: "torch.equal (returns a Python bool)",
}

# Ops that only reinterpret memory (no kernel on a GPU) or do nothing at all.
_FREE_OPS = {
    aten.detach.default,
    aten.alias.default,
    aten.lift_fresh.default,
    aten._to_copy.default,  # counted separately when it really copies; see DispatchRecorder
}


def _is_sync(func: Any, args: tuple, kwargs: dict) -> str | None:
    """Why `func(*args, **kwargs)` forces a synchronisation, or None."""
    if func in SYNC_OPS:
        return SYNC_OPS[func]
    if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None and len(args) < 2:
        return "repeat_interleave without output_size"
    if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ()):
            return "boolean-mask indexing (a nonzero inside)"
    return None


@dataclass
class SyncEvent:
    """One synchronising op: its name, why it synchronises, and where in user code it came from."""

    op: str
    why: str
    where: str
    tag: Any = None

    def __str__(self) -> str:
        tag = f"[{self.tag}] " if self.tag is not None else ""
        return f"{tag}{self.op}: {self.why}, at {self.where}"


@dataclass
class DispatchRecorder(TorchDispatchMode):
    """Records, while active, the compute ops dispatched and every synchronising op.

    `ops` counts compute ops by name (views, aliases and no-op dtype casts excluded: they launch no
    kernel); `syncs` lists the synchronising ops with the user frame that caused them. `exempt` holds
    tensors whose host reads are not syncs on the device being modelled (the CPU step counters of
    non-fused optimizers, which fused CUDA optimizers keep on the device). `tag` is copied into each
    event: set it to the current training step to attribute syncs to steps.
    """

    exempt: list[torch.Tensor] = field(default_factory=list)
    tag: Any = None
    ops: Counter = field(default_factory=Counter)
    syncs: list[SyncEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def op_count(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        why = _is_sync(func, args, kwargs)
        if why and not self._exempt(args):
            self.syncs.append(SyncEvent(str(func.overloadpacket.__name__), why, _user_frame(), self.tag))
        if not func.is_view and func not in _FREE_OPS:
            self.ops[str(func.overloadpacket.__name__)] += 1
        elif func is aten._to_copy.default and _really_copies(args[0], kwargs):
            self.ops["_to_copy"] += 1
        return func(*args, **kwargs)

    def _exempt(self, args: tuple) -> bool:
        first = args[0] if args else None
        return isinstance(first, torch.Tensor) and any(first is t for t in self.exempt)


def _really_copies(x: Any, kwargs: dict) -> bool:
    if not isinstance(x, torch.Tensor):
        return True
    dtype, device = kwargs.get("dtype", x.dtype), kwargs.get("device", x.device)
    return dtype != x.dtype or torch.device(device) != x.device


def _user_frame() -> str:
    """The innermost frame outside torch itself and this module: where the op was asked for."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if "/torch/" not in name and name != __file__:
            return f"{name}:{frame.lineno} ({frame.name})"
    return "?"


def count_ops(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, DispatchRecorder]:
    """Runs fn(*args, **kwargs) under a DispatchRecorder; returns (its result, the recorder)."""
    with DispatchRecorder() as rec:
        out = fn(*args, **kwargs)
    return out, rec
