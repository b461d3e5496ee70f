"""How close the pretraining step runs to the machine's limit (`benchmarks/throughput.py` reports these).

- FLOPs of one view: torch's own counter (`torch.utils.flop_counter.FlopCounterMode`) around one eager
  training step's forward and backward (two parameter draws, two views, encoder and head on the 2B views,
  NT-Xent) under the run's autocast, divided by the 2B views. torch counts matrix products and convolutions;
  element-wise work (augmentation, BatchNorm, activations) counts zero, as in every MFU figure.
- Peak FLOP/s of the compute dtype (bfloat16 where the step runs under bf16 autocast, else float32): the best
  of square matmuls of a few sizes, each the median of a few timed repeats, measured in the same run.
- Model FLOP/s achieved = FLOPs per view x the views/s of `trainer.fit`; MFU = achieved / peak.
- One eager step's time by phase, from `torch.profiler`: each phase runs inside `record_function` (views:
  two draws and two `augment.apply`; encoder forward on the 2B views; head, loss and gather; backward;
  optimizer step and zero_grad); "rest" is the step's wall time outside them. CPU time of each range on a
  CPU, its kernels' device time on a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import sync

PHASES = ("views", "encoder forward", "head, loss and gather", "backward", "optimizer")
MATMUL_SIZES = {"cpu": (1024, 2048, 3072), "cuda": (4096, 8192, 16384)}


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def phased_step(module: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor, dtype: torch.dtype | None) -> None:
    """One eager training step on uint8 images x (B, 3, H, W), each phase a `record_function` range; the same
    computation as `SimCLRModule._views_loss` + backward + optimizer step."""
    b, _, h, w = x.shape
    with autocast(x.device, dtype):
        with record_function("views"):
            first, second = (module.augment.sample_params(b, h, w, x.device) for _ in range(2))
            view1, view2 = module.augment.apply(x, first), module.augment.apply(x, second)
        with record_function("encoder forward"):
            features = module(torch.cat([view1, view2]))
        with record_function("head, loss and gather"):
            z1, z2 = module.head(features).chunk(2)
            loss = module.criterion(z1, z2)
    with record_function("backward"):
        loss.backward()
    with record_function("optimizer"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def flops_per_view(module: Any, optimizer: torch.optim.Optimizer, x: torch.Tensor, dtype: torch.dtype | None) -> int:
    """FLOPs of one view's forward and backward, counted by torch over one eager step of x (B images)."""
    with FlopCounterMode(display=False) as counter:
        phased_step(module, optimizer, x, dtype)
    return counter.get_total_flops() // (2 * len(x))


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict[str, Any]:
    """Best FLOP/s of an (n, n) @ (n, n) product in `dtype` over MATMUL_SIZES, each the median of `repeats`."""
    results = {}
    for n in MATMUL_SIZES["cuda" if device.type == "cuda" else "cpu"]:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        times = _timed(lambda a=a, b=b: torch.mm(a, b), device, repeats)
        results[n] = 2 * n**3 / statistics.median(times)
        del a, b
    best = max(results, key=results.get)
    return {"flops_per_s": results[best], "size": best, "dtype": str(dtype), "by_size": results}


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up: kernel selection, allocation
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def phase_breakdown(step: Callable[[], None], device: torch.device, steps: int = 5) -> dict[str, float]:
    """Seconds per step in each of PHASES and the rest, from torch.profiler over `steps` steps (after one)."""
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = time.perf_counter() - start
    totals = {e.key: e for e in prof.key_averages() if e.key in PHASES}
    attr = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    seconds = {p: getattr(totals[p], attr) / 1e6 / steps if p in totals else 0.0 for p in PHASES}
    seconds["rest"] = max(wall / steps - sum(seconds.values()), 0.0)
    return seconds


def measure(module: Any, optimizer: Any, x: torch.Tensor, dtype: torch.dtype | None, fit_views_per_s: float) -> dict:
    """FLOPs per view, the peak of the compute dtype, the achieved model FLOP/s and MFU, and the phases."""
    device = x.device
    flops = flops_per_view(module, optimizer, x, dtype)
    peak = peak_matmul_flops(device, dtype or torch.float32)
    achieved = flops * fit_views_per_s
    phases = phase_breakdown(lambda: phased_step(module, optimizer, x, dtype), device)
    return {
        "flops_per_view": flops,
        "model_flops_per_s": achieved,
        "peak": peak,
        "mfu": achieved / peak["flops_per_s"],
        "phases_s_per_step": phases,
    }
