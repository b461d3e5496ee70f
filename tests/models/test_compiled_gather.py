"""Under torch.compile the negatives' gather stays inside the step's graph, with its backward collective in the
backward graph (two gloo processes; docs/scaling.md, "The negatives' gather")."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch._dynamo.backends.common import aot_autograd

from simclr.models.loss import NTXentLoss


def _collectives(graph: torch.fx.GraphModule) -> list[str]:
    return [str(n.target) for n in graph.graph.nodes if n.op == "call_function" and "_c10d_functional" in str(n.target)]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        seen: dict[str, list[list[str]]] = {"forward": [], "backward": []}

        def record(kind: str):  # noqa: ANN202
            def compiler(graph: torch.fx.GraphModule, inputs: list) -> torch.fx.GraphModule:
                seen[kind].append(_collectives(graph))
                return graph

            return compiler

        backend = aot_autograd(fw_compiler=record("forward"), bw_compiler=record("backward"))
        loss = NTXentLoss(temperature=0.5, gather_distributed=True)
        compiled = torch.compile(loss, backend=backend, fullgraph=True)  # a graph break raises
        gen = torch.Generator().manual_seed(rank)
        z1, z2 = (torch.randn(8, 16, generator=gen, requires_grad=True) for _ in range(2))
        compiled(z1, z2).backward()
        eager_z1, eager_z2 = (z.detach().clone().requires_grad_() for z in (z1, z2))
        loss(eager_z1, eager_z2).backward()
        same = torch.allclose(z1.grad, eager_z1.grad, atol=1e-6) and torch.allclose(z2.grad, eager_z2.grad, atol=1e-6)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({**seen, "same_gradients": same}))
    finally:
        dist.destroy_process_group()


def test_the_compiled_loss_holds_the_gather_and_its_backward_in_one_graph(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(record["forward"]) == len(record["backward"]) == 1  # one graph each way, no break
        # gloo: the gather is an all-to-all (simclr/models/collectives.py); z1 and z2 are gathered each way.
        assert record["forward"][0].count("_c10d_functional.all_to_all_single.default") == 2
        assert record["backward"][0].count("_c10d_functional.all_to_all_single.default") == 2
        assert record["same_gradients"]
