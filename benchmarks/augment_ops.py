"""Ops, generated kernels and CUDA launches of one augmented view, for `benchmarks/throughput.py`.

What the augmentation costs the device per view, apart from its time: the compute ops one view
dispatches eagerly (`simclr.training.profiling.count_ops`, split into the parameter draw and `apply`)
and how many of them synchronise; with --compile-ops the kernels Inductor generates for a compiled
`augment.apply`; on CUDA the kernel launches of one view, counted with torch.profiler, for both. On a
GPU a 32 x 32 batch is small enough that these counts, not the arithmetic, set the augmentation's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import sync
from benchmarks.throughput_rows import autocast


def cuda_launches(fn: Callable[[], Any]) -> int:
    """GPU kernel launches (memcpy and memset included) of one call of fn, counted with torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.events()
    device_side = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    return max(device_side, sum(len(getattr(e, "kernels", ())) for e in events))


def eager_op_counts(module: Any, x: torch.Tensor, dtype: torch.dtype | None) -> dict[str, Any]:
    """Compute ops of one view made eagerly (one `augment(images)` call), and of its two parts."""
    from simclr.training.profiling import count_ops

    augment, (b, _, h, w) = module.augment, x.shape
    with autocast(x.device, dtype):
        _, view = count_ops(augment, x)
        params, draw = count_ops(augment.sample_params, b, h, w, x.device)
        _, apply = count_ops(augment.apply, x, params)
        out = {
            "ops_per_view_eager": view.op_count,
            "sample_params_ops": draw.op_count,
            "apply_ops_eager": apply.op_count,
            "syncs_per_view_eager": len(view.syncs),
        }
        if x.device.type == "cuda":
            out["cuda_launches_per_view_eager"] = cuda_launches(lambda: augment(x))
    return out


def compiled_op_counts(module: Any, x: torch.Tensor, dtype: torch.dtype | None, sample_ops: int) -> dict[str, Any]:
    """Kernels Inductor generates for `torch.compile(augment.apply)` (caches off, so they are generated
    here), its graphs and graph breaks, and per view: the parameter draw's eager ops + those kernels.

    Library kernels Inductor calls (extern kernels) are not in `generated_kernel_count`; on CUDA the
    profiler's launch count per view covers everything.
    """
    import torch._dynamo
    import torch._inductor.config as inductor_config
    import torch._inductor.metrics as metrics

    augment, (b, _, h, w) = module.augment, x.shape
    torch._dynamo.reset()
    apply = torch.compile(augment.apply)
    params = augment.sample_params(b, h, w, x.device)
    no_cache = {k: v for k, v in {"force_disable_caches": True}.items() if hasattr(inductor_config, k)}
    with inductor_config.patch(**no_cache), autocast(x.device, dtype):
        metrics.reset()
        start = time.perf_counter()
        apply(x, params)
        sync(x.device)
        out: dict[str, Any] = {"compile_s": time.perf_counter() - start}
        kernels = metrics.generated_kernel_count
        if x.device.type == "cuda":
            out["cuda_launches_per_view_compiled"] = cuda_launches(
                lambda: apply(x, augment.sample_params(b, h, w, x.device))
            )
        explained = torch._dynamo.explain(augment.apply)(x, params)
    out.update(
        apply_kernels_compiled=kernels,
        graphs=explained.graph_count,
        graph_breaks=explained.graph_break_count,
        ops_per_view_compiled=sample_ops + kernels,
    )
    return out
