"""benchmarks/utilisation.py: the FLOPs of a view, the peak matmul rate and the phases of one step."""

from __future__ import annotations

import time

import torch
from torch.profiler import record_function
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.throughput_rows import build_bare
from benchmarks.utilisation import PHASES, flops_per_view, peak_matmul_flops, phase_breakdown
from tests.helpers import TINY_SSL, compose_config, uint8_images

CPU = torch.device("cpu")


def test_the_phased_step_counts_what_the_training_step_computes() -> None:
    """The phases split the module's own `views_loss` + backward: torch counts the same FLOPs for both."""
    module, optimizer = build_bare(compose_config("train_ssl", TINY_SSL), CPU)
    x = uint8_images(16)
    counted = flops_per_view(module, optimizer, x, None)
    with FlopCounterMode(display=False) as reference:
        draws = (module.augment.sample_params(16, 32, 32, CPU) for _ in range(2))
        module.views_loss(x, *draws).backward()
    assert counted == reference.get_total_flops() // 32
    # The encoder alone, forward on the 32 views, is about a third of it (backward ~ twice the forward).
    with FlopCounterMode(display=False) as forward:
        module(torch.rand(32, 3, 32, 32))
    assert 2.5 < counted * 32 / forward.get_total_flops() < 3.5


def test_the_phases_are_the_profiled_ranges() -> None:
    def step() -> None:
        with record_function("views"):
            time.sleep(0.03)
        with record_function("backward"):
            time.sleep(0.01)
        time.sleep(0.005)  # outside every phase

    phases = phase_breakdown(step, CPU, steps=3)
    assert list(phases) == [*PHASES, "rest"]
    assert 0.025 < phases["views"] < 0.05 and 0.008 < phases["backward"] < 0.03
    assert phases["encoder forward"] == phases["optimizer"] == 0
    assert 0.003 < phases["rest"] < 0.02


def test_the_peak_is_the_best_size() -> None:
    peak = peak_matmul_flops(CPU, torch.float32, repeats=2)
    assert peak["flops_per_s"] == max(peak["by_size"].values()) > 1e8
    assert peak["size"] in peak["by_size"] and peak["dtype"] == "torch.float32"
