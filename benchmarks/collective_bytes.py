"""Bytes each process sends for the negatives' gather and its backward pass, on gloo (CPU processes).

    python benchmarks/collective_bytes.py                                  # W = 2, 3, 4; n = 256, d = 128
    python benchmarks/collective_bytes.py --worlds 2 --n 64 --d 128 --out bytes.json

Spawns W processes (gloo, file:// rendezvous) that each hold z of shape (n, d), float32, and gathers it
with gradients three ways, counting the bytes each process writes during the forward and during the
backward pass: the delta of `wchar` in /proc/self/io around each (gloo's TCP transport sends with
write/writev, which `wchar` counts; a dist.send of 4,000,000 bytes adds 4,000,096 on the sender and 48
on the receiver). Each window opens after a barrier and closes when the collective has completed.

    old         all_gather of the shards; backward: all-reduce (sum) of the stacked (W, n, d) gradient,
                every process keeping its row. The algorithm simclr.models.collectives used before; kept
                here only as the baseline.
    all_gather  torch's all_gather_single_autograd; backward: torch's reduce_scatter_tensor. What
                `gather_with_grad` runs on backends other than gloo.
    library     `simclr.models.collectives.gather_with_grad` itself (on gloo: an all-to-all of W copies
                of the shard; backward: torch's all-to-all of the gradient, each process's rows to it).

Payload per process and call, ring algorithms, b bytes an element: all-gather (W - 1) n d b; all-reduce of
S bytes 2 (W - 1) / W S, so the old backward (S = W n d b) 2 (W - 1) n d b; reduce-scatter (W - 1) n d b;
all-to-all (W - 1) n d b. Gloo's reduce-scatter is an all-reduce of the whole input followed by a copy of
one chunk, so `all_gather`'s backward costs 2 (W - 1) n d b there, as much as the old one. The counts add
gloo's headers, 144 to 576 bytes times (W - 1) (HEADER_BYTES). The three algorithms' gathered tensors and
gradients are checked equal before anything is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the repository, on the path
    sys.path.insert(0, str(REPO))

from simclr.models.collectives import gather_with_grad  # noqa: E402

ALGORITHMS = ("old", "all_gather", "library")
# Gloo's bytes beyond the payload, per process, in units of (W - 1): 144 for each message a process sends and
# receives (96 written with the send, 48 by the receipt), 2 such messages a ring step of the all-gather, 4 of
# the all-reduce, 1 a peer in the all-to-all. Measured with torch 2.14.1, W = 2, 3, 4, n d b from 2 KiB to 1 MiB.
HEADER_BYTES = {"all_gather": 288, "all_reduce": 576, "all_to_all": 144}
GLOO_RUNS = {"reduce_scatter": "all_reduce"}  # ProcessGroupGloo::reduce_scatter_tensor_coalesced


class _OldGather(torch.autograd.Function):
    """The previous gather: all_gather forward, all-reduce of every shard's gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        shards = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(shards, x.contiguous())
        return tuple(shards)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        grad = torch.stack(grads)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


def _gather(algorithm: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if algorithm == "old":
        return lambda x: torch.cat(_OldGather.apply(x))
    if algorithm == "all_gather":
        return lambda x: funcol.wait_tensor(funcol.all_gather_single_autograd(x, 0, dist.group.WORLD))
    return gather_with_grad


def collectives(algorithm: str, backend: str = "gloo") -> tuple[str, str]:
    """The collectives (forward, backward) an algorithm runs on `backend`."""
    if algorithm == "old":
        return "all_gather", "all_reduce"
    if algorithm == "all_gather":
        return "all_gather", "reduce_scatter"
    return ("all_to_all", "all_to_all") if backend == "gloo" else ("all_gather", "reduce_scatter")


def payload_bytes(collective: str, world: int, shard_bytes: int, backend: str = "gloo") -> int:
    """Bytes a process sends in a ring (or pairwise) collective over W shards of `shard_bytes` each."""
    if backend == "gloo":
        collective = GLOO_RUNS.get(collective, collective)
    if collective == "all_reduce":  # of the W shards' gradient, W * shard_bytes
        return 2 * (world - 1) * shard_bytes
    return (world - 1) * shard_bytes  # all_gather, reduce_scatter, all_to_all


def expected_bytes(collective: str, world: int, shard_bytes: int) -> int:
    """payload_bytes on gloo plus gloo's headers: what the counts should read."""
    headers = HEADER_BYTES[GLOO_RUNS.get(collective, collective)] * (world - 1)
    return payload_bytes(collective, world, shard_bytes) + headers


def _written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def _count(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(bytes this process wrote while fn ran, fn's result); the processes start together."""
    dist.barrier()
    before = _written()
    out = fn()
    return _written() - before, out


def _worker(rank: int, init_file: str, world: int, n: int, d: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        z = torch.randn(n, d, generator=torch.Generator().manual_seed(rank))
        weights = torch.randn(world * n, d, generator=torch.Generator().manual_seed(100 + rank))
        rows = {}
        for algorithm in ALGORITHMS:
            x = z.clone().requires_grad_(True)
            forward, gathered = _count(lambda a=algorithm, x=x: _gather(a)(x))
            backward, _ = _count(lambda g=gathered: g.backward(weights))  # this process's loss: (weights * g).sum()
            rows[algorithm] = {"forward": forward, "backward": backward, "gathered": gathered.detach(), "grad": x.grad}
        torch.save(rows, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def measure(world: int, n: int, d: int) -> dict[str, Any]:
    """Spawns `world` gloo processes; per algorithm the bytes each sent forward and backward, and the formulas.

    Raises AssertionError if the algorithms' gathered tensors or gradients differ.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(f"{tmp}/init", world, n, d, tmp), nprocs=world, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world)]
    shard_bytes = n * d * 4
    result: dict[str, Any] = {"world": world, "n": n, "d": d, "shard_bytes": shard_bytes, "algorithms": {}}
    for algorithm in ALGORITHMS:
        for rows in ranks:
            torch.testing.assert_close(rows[algorithm]["gathered"], rows["old"]["gathered"], rtol=0, atol=0)
            torch.testing.assert_close(rows[algorithm]["grad"], rows["old"]["grad"], rtol=1e-6, atol=1e-6)
        entry: dict[str, Any] = {}
        for phase, collective in zip(("forward", "backward"), collectives(algorithm), strict=True):
            entry[phase] = {
                "collective": collective,
                "bytes_per_rank": [rows[algorithm][phase] for rows in ranks],
                "payload": payload_bytes(collective, world, shard_bytes),
                "expected": expected_bytes(collective, world, shard_bytes),
            }
        result["algorithms"][algorithm] = entry
    return result


def table(results: list[dict[str, Any]]) -> str:
    """Markdown rows: the bytes a process sent (the most over ranks) per call, as payload + the rest (headers)."""
    lines = [
        "| W | n × d | algorithm | forward | bytes sent | backward | bytes sent |",
        "|---|---|---|---|---:|---|---:|",
    ]
    for res in results:
        for algorithm, entry in res["algorithms"].items():
            cells = []
            for phase in ("forward", "backward"):
                p = entry[phase]
                runs = GLOO_RUNS.get(p["collective"])
                name = p["collective"] + (f" (gloo: {runs})" if runs else "")
                sent = max(p["bytes_per_rank"])
                cells += [name, f"{p['payload']:,} + {sent - p['payload']:,}"]
            lines.append(f"| {res['world']} | {res['n']} × {res['d']} | {algorithm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--n", type=int, default=256, help="embeddings per process")
    parser.add_argument("--d", type=int, default=128, help="embedding width")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = [measure(w, args.n, args.d) for w in args.worlds]
    print(f"torch {torch.__version__}, gloo, float32; bytes each process sent, per gather call\n")
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
