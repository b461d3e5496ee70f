"""DispatchRecorder: it must see every kind of host-device synchronisation the step rules forbid,
and count compute ops but not views; otherwise the sync-free and op-budget tests prove nothing."""

from __future__ import annotations

import pytest
import torch

from simclr.training.profiling import DispatchRecorder, count_ops

X = torch.arange(12.0).view(3, 4)


@pytest.mark.parametrize(
    "name, fn",
    [
        (".item()", lambda: X.sum().item()),
        ("float()", lambda: float(X.sum())),
        ("bool() / python if", lambda: bool((X > 3).any())),
        ("nonzero", lambda: (X > 3).nonzero()),
        ("boolean-mask indexing", lambda: X[X > 3]),
        ("boolean-mask assignment", lambda: X.clone().__setitem__(X > 3, 0.0)),
        ("masked_select", lambda: X.masked_select(X > 3)),
        ("unique", lambda: torch.unique(X)),
        ("repeat_interleave without output_size", lambda: torch.arange(3).repeat_interleave(torch.tensor([1, 2, 3]))),
        ("tensor from host data", lambda: torch.tensor([1.0, 2.0]) + X[0, :2]),
        ("torch.equal", lambda: torch.equal(X, X)),
    ],
)
def test_each_kind_of_synchronisation_is_recorded(name: str, fn) -> None:  # noqa: ANN001
    _, rec = count_ops(fn)
    assert rec.syncs, f"{name} was not recorded"
    assert "test_profiling.py" in rec.syncs[0].where  # attributed to the caller, not to torch


def test_device_side_selection_is_not_a_synchronisation() -> None:
    def fn() -> torch.Tensor:
        mask = X > 3
        y = torch.where(mask, X, 0.0) + X.gather(1, torch.zeros(3, 1, dtype=torch.long))
        return y.sum() * 2 + torch.full((3,), 2.0).sum()

    _, rec = count_ops(fn)
    assert rec.syncs == []


def test_exempt_tensors_are_not_reported() -> None:
    step = torch.tensor(3.0)
    with DispatchRecorder(exempt=[step]) as rec:
        step.item()
        X.sum().item()
    assert len(rec.syncs) == 1


def test_views_are_free_and_compute_ops_are_counted() -> None:
    _, views = count_ops(lambda: X.view(4, 3).t().unsqueeze(0).expand(2, 3, 4)[:, 1:].permute(0, 2, 1))
    assert views.op_count == 0
    _, compute = count_ops(lambda: (X * 2 + 1).clamp(0, 5).exp())
    assert compute.op_count == 4 and compute.ops["mul"] == 1 and compute.ops["exp"] == 1
    _, casts = count_ops(lambda: (X.float(), X.to(torch.float16)))
    assert casts.op_count == 1  # X.float() of a float tensor does nothing
