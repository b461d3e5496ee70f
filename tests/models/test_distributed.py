"""Two real processes (DDP over gloo) against one process computing the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from simclr.models.collectives import gather_with_grad
from simclr.models.loss import NTXentLoss
from simclr.models.nets import CifarResNet, ProjectionHead
from simclr.training.sync_batchnorm import AnyDeviceSyncBatchNorm, convert_sync_batchnorm, revert_sync_batchnorm

WORLD = 2
GLOBAL_BATCH = 16


def _model() -> nn.Module:
    """Encoder and head with BatchNorm in both (2-D and 1-D), as pretraining uses them."""
    torch.manual_seed(0)
    encoder = CifarResNet("resnet_tiny", width=4)
    return nn.Sequential(encoder, ProjectionHead(encoder.feature_dim, hidden_dim=32, out_dim=8))


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=gen), torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=gen)


def _step(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, gather: bool) -> torch.Tensor:
    z1, z2 = model(torch.cat([x1, x2])).chunk(2)
    loss = NTXentLoss(temperature=0.5, gather_distributed=gather)(z1, z2)
    loss.backward()
    return loss.detach()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One process's step on its shard, with the negatives gathered across processes and without."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for gather in (True, False):
            model = convert_sync_batchnorm(_model())
            ddp = DistributedDataParallel(model)
            x1, x2 = _views()
            shard = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
            loss = _step(ddp, x1[shard], x2[shard], gather)
            # DDP averaged the gradients; the global loss is the mean of the processes' losses.
            dist.all_reduce(loss)
            torch.save(
                {
                    "loss": loss / WORLD,
                    "grads": {k: p.grad.clone() for k, p in model.named_parameters()},
                    "buffers": {k: b.clone() for k, b in model.named_buffers()},
                },
                Path(out_dir) / f"rank{rank}_gather{gather}.pt",
            )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, list[dict]]:
    """{gather: each rank's loss, gradients and buffers}, from one spawn of two processes."""
    out = tmp_path_factory.mktemp("two_processes")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return {
        g: [torch.load(out / f"rank{r}_gather{g}.pt", weights_only=True) for r in range(WORLD)] for g in (True, False)
    }


@pytest.fixture(scope="module")
def reference() -> dict:
    model = _model()
    loss = _step(model, *_views(), gather=True)  # one process: gathering is a no-op
    return {
        "loss": loss,
        "grads": {k: p.grad for k, p in model.named_parameters()},
        "buffers": dict(model.named_buffers()),
    }


def test_two_processes_equal_one_process(two_processes: dict, reference: dict) -> None:
    for r, out in enumerate(two_processes[True]):
        torch.testing.assert_close(out["loss"], reference["loss"], atol=1e-5, rtol=0)
        assert out["grads"].keys() == reference["grads"].keys()
        for name, grad in reference["grads"].items():
            torch.testing.assert_close(out["grads"][name], grad, atol=1e-5, rtol=1e-5, msg=f"rank {r}: {name}")
        for name, buf in reference["buffers"].items():  # BatchNorm running statistics of the global batch
            torch.testing.assert_close(out["buffers"][name].to(buf.dtype), buf, atol=1e-5, rtol=1e-5)


def test_without_gathering_the_loss_differs(two_processes: dict, reference: dict) -> None:
    """The check above can fail: per-process negatives give another loss and other gradients."""
    ranks = two_processes[False]
    assert not torch.allclose(ranks[0]["loss"], reference["loss"], atol=1e-3)
    name = next(iter(reference["grads"]))
    assert not torch.allclose(ranks[0]["grads"][name], reference["grads"][name], atol=1e-5)


def test_single_process_gather_is_identity() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x


def test_sync_batchnorm_conversion_keeps_state() -> None:
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    synced = convert_sync_batchnorm(model)
    assert any(isinstance(m, AnyDeviceSyncBatchNorm) for m in synced.modules())
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in synced.modules())
    assert synced.state_dict().keys() == state.keys()
    reverted = revert_sync_batchnorm(synced)
    assert not any(isinstance(m, AnyDeviceSyncBatchNorm) for m in reverted.modules())
    for k, v in reverted.state_dict().items():
        assert torch.equal(v, state[k])
    # In one process the synchronised layer is exactly BatchNorm.
    x = torch.randn(8, 3, 32, 32)
    torch.testing.assert_close(convert_sync_batchnorm(_model())(x), _model()(x))
