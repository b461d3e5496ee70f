"""Two nodes on one machine: two torchrun agents (`--nnodes=2 --nproc_per_node=1`, c10d rendezvous on 127.0.0.1,
gloo on the CPU) running train_ssl.py as docs/scaling.md tells users to, against `trainer=ddp_sim` (the same two
global ranks, shards and per-rank randomness in one launch); then a node lost, and a node hung, mid-epoch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simclr.jobs.train_ssl import train_ssl
from tests.helpers import REPO, TINY_SSL, entry_point_env, ssl_config

TORCHRUN = Path(sys.executable).parent / "torchrun"
EPOCHS = 3
# TINY_SSL's trainer, as two nodes of one CPU process each: `trainer=ddp trainer.accelerator=cpu` and no `+`.
TWO_NODES = [
    *(o for o in TINY_SSL if o != "trainer=cpu"),
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.num_nodes=2",
    "trainer.benchmark=false",
    f"trainer.max_epochs={EPOCHS}",
    "ckpt_path=auto",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nodes(run: Path, overrides: list[str], logs: Path, max_restarts: int = 0) -> list[subprocess.Popen]:
    """docs/scaling.md's torchrun command, once per node, each agent in a session of its own (killable whole)."""
    port = free_port()
    command = [
        str(TORCHRUN),
        "--nnodes=2",
        "--nproc_per_node=1",
        f"--max-restarts={max_restarts}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        f"--rdzv-id=test{port}",
        "train_ssl.py",
        *overrides,
        f"hydra.run.dir={run}",
    ]
    env = {**entry_point_env(), "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # docs/scaling.md says why
    logs.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=open(logs / f"agent{n}.out", "w"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for n in range(2)
    ]


def wait_all(agents: list[subprocess.Popen], timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [a.wait(timeout=max(deadline - time.monotonic(), 1)) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(run: Path, reference: Path) -> None:
    ours, theirs = final_weights(run), final_weights(reference)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, atol=1e-5, rtol=0, msg=name)


@pytest.fixture(scope="module")
def one_node_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run as two processes of one launch (`trainer=ddp_sim`)."""
    out = tmp_path_factory.mktemp("ddp_sim") / "run"
    train_ssl(ssl_config(cifar_root, out, ["trainer=ddp_sim", f"trainer.max_epochs={EPOCHS}"]))
    return out


@pytest.fixture(scope="module")
def two_node_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("two_nodes")
    agents = start_nodes(base / "run", [*TWO_NODES, f"data.root={cifar_root}"], base / "logs")
    codes = wait_all(agents)
    assert codes == [0, 0], [(base / "logs" / f"agent{n}.out").read_text()[-3000:] for n in range(2)]
    return base / "run"


def test_two_nodes_end_with_the_weights_of_two_processes_on_one_node(two_node_run: Path, one_node_run: Path) -> None:
    assert_same_weights(two_node_run, one_node_run)


def test_two_nodes_write_one_run_directory(two_node_run: Path, one_node_run: Path) -> None:
    """Global rank 0 writes the checkpoints and logs; the other node adds nothing: not a second .hydra/ or log
    file, not a line of the log."""
    files = sorted(p.relative_to(two_node_run).as_posix() for p in two_node_run.rglob("*") if p.is_file())
    expected = ["checkpoints/last.ckpt", "config.yaml", "hparams.yaml", "metrics.csv", "results.json", "status.json"]
    expected += [f"checkpoints/epoch{e:04d}.ckpt" for e in range(EPOCHS)]
    expected += [f".hydra/{name}.yaml" for name in ("config", "hydra", "overrides")]
    expected += ["train_ssl.log", "figures/embeddings_test_pca.png", "figures/views_pairs.png"]
    assert files == sorted(expected)
    log = (two_node_run / "train_ssl.log").read_text().splitlines()
    assert sum("pretraining done" in line for line in log) == 1
    assert sum("derived values" in line for line in log) == 1  # each process logs it: the other's went elsewhere
    assert "AnyDeviceSyncBatchNorm" in log[0]  # trainer=ddp on the CPU: BatchNorm synchronised without a `+`
    assert json.loads((two_node_run / "status.json").read_text())["status"] == "completed"
    rows = (two_node_run / "metrics.csv").read_text().splitlines()
    assert len(rows) == len((one_node_run / "metrics.csv").read_text().splitlines())  # one writer, no row twice


def test_a_node_lost_mid_epoch_costs_that_epoch_only(
    cifar_root: Path, one_node_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Node 1's worker is killed (SIGKILL) in the middle of epoch 1: the survivor stops with the one-line report,
    torchrun restarts both, they resume from the end of epoch 0 (ckpt_path=auto), and the run ends with the
    weights of the run never interrupted. The detection and restart times are printed (docs/scaling.md)."""
    record = tmp_path / "record"
    lose = f"trainer.callbacks=[{{_target_:tests.callbacks.LoseNode,out_dir:{record}}}]"
    agents = start_nodes(tmp_path / "run", [*TWO_NODES, f"data.root={cifar_root}", lose], tmp_path / "logs", 1)
    codes = wait_all(agents)
    outputs = [(tmp_path / "logs" / f"agent{n}.out").read_text() for n in range(2)]
    assert codes == [0, 0], [o[-3000:] for o in outputs]
    assert_same_weights(tmp_path / "run", one_node_run)

    killed = json.loads((record / "killed.json").read_text())
    survivor = 1 - killed["rank"]
    failed = json.loads((record / f"failed_{survivor}.json").read_text())
    restarted = [json.loads((record / f"started_{r}_1.json").read_text()) for r in range(2)]
    assert [r["epoch"] for r in restarted] == [1, 1]  # resumed at the start of the interrupted epoch
    assert sum("error: a collective operation of this 2-process run failed" in o for o in outputs) == 1
    detect, resume = failed["time"] - killed["time"], min(r["time"] for r in restarted) - killed["time"]
    with capsys.disabled():
        print(f"\nlost node: detected after {detect:.3f} s, training again after {resume:.1f} s")
    assert detect < 5  # gloo sees the connection close: no timeout involved


@pytest.mark.slow  # 15 s; the one-line report itself is checked by default (test_a_failed_collective_is_one_line)
def test_a_hung_node_is_given_up_after_the_configured_timeout(
    cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Node 1's worker stops (SIGSTOP) without closing anything: the survivor waits trainer.strategy.timeout
    (3 s here), then ends with one line that names the setting."""
    record = tmp_path / "record"
    hang = f"trainer.callbacks=[{{_target_:tests.callbacks.LoseNode,out_dir:{record},epoch:0,signal:SIGSTOP}}]"
    overrides = [*TWO_NODES, f"data.root={cifar_root}", hang, "trainer.strategy.timeout.seconds=3"]
    agents = start_nodes(tmp_path / "run", overrides, tmp_path / "logs")
    deadline = time.monotonic() + 120
    while all(a.poll() is None for a in agents) and time.monotonic() < deadline:
        time.sleep(0.2)
    wait_all([a for a in agents if a.poll() is not None])
    for a in agents:  # the hung node's agent waits for its stopped worker: ended here
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)
            a.wait()
    killed = json.loads((record / "killed.json").read_text())
    with contextlib.suppress(ProcessLookupError):  # the stopped worker is in a session of its own: ended too
        os.kill(killed["pid"], signal.SIGKILL)
    failed = json.loads((record / f"failed_{1 - killed['rank']}.json").read_text())
    with capsys.disabled():
        print(f"\nhung node: given up after {failed['time'] - killed['time']:.2f} s (timeout 3 s)")
    assert 2.9 < failed["time"] - killed["time"] < 8
    output = "\n".join((tmp_path / "logs" / f"agent{n}.out").read_text() for n in range(2))
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "trainer.strategy.timeout=3 s" in errors[0], output[-3000:]


def test_a_failed_collective_is_one_line_that_names_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RuntimeError in a run of more than one process is reported as a lost process; other errors, and any
    error of a single process, are not (they keep their traceback)."""
    from simclr.training.lost_process import lost_process_error
    from tests.helpers import compose_config

    cfg = compose_config("train_ssl", ["trainer=ddp", "trainer.strategy.timeout.seconds=90", "paths.output_dir=run"])
    gloo = RuntimeError("[pair.cc:545] Read error [127.0.0.1]:24262: Connection reset by peer.\nmore lines")
    monkeypatch.setenv("WORLD_SIZE", "8")
    error = lost_process_error(gloo, cfg)
    assert error is not None and "\n" not in str(error)
    assert "of this 8-process run failed (RuntimeError: [pair.cc:545] Read error" in str(error)
    assert "trainer.strategy.timeout=90 s" in str(error) and "run/checkpoints with ckpt_path=auto" in str(error)
    assert lost_process_error(ValueError("a bug"), cfg) is None
    assert lost_process_error(torch.OutOfMemoryError("out of memory"), cfg) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert lost_process_error(gloo, cfg) is None
