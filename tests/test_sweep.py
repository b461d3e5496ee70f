"""Hydra multirun through the real script: one directory per job, probes, failures, the summary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from simclr.jobs.sweep import summarize
from tests.conftest import REPO

TINY = [
    "model=resnet_tiny",
    "model.width=4",
    "model.head.hidden_dim=32",
    "trainer=cpu",
    "data.eval_batch_size=64",
    "data.download=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.log_every_n_steps=1",
    "data.val_size=50",
    "knn.k=20",
    "probe.batch_size=32",
    "probe.lr=0.05",
]


def _multirun(cifar_root: Path, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        str(REPO / "train_ssl.py"),
        "-m",
        *TINY,
        f"data.root={cifar_root}",
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]
    return subprocess.run(
        args,
        cwd=sweep_dir.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_two_by_two_sweep_with_probe_and_summary(cifar_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = _multirun(
        cifar_root, sweep, "loss.temperature=0.2,0.5", "data.batch_size=16,32", "probe.enabled=true", "probe.epochs=2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(d for d in sweep.iterdir() if d.is_dir())
    assert [d.name for d in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file() and (job / "metrics.csv").is_file()
        assert json.loads((job / "status.json").read_text())["status"] == "completed"
        assert (job / "linear" / "final" / "results.json").is_file()
    # The end-of-sweep callback wrote the summary; the command rewrites it the same way.
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    assert {r["overrides"] for r in rows} == {
        f"loss.temperature={t} data.batch_size={b}" for t in ("0.2", "0.5") for b in ("16", "32")
    }
    for r in rows:  # validation and test figures side by side; the objective is the validation one
        assert float(r["val_knn_top1"]) > 0.3 and float(r["test_knn_top1"]) > 0.3
        assert float(r["probe_val_top1"]) > 0.3 and float(r["probe_test_top1"]) > 0.3
        assert r["objective"] == r["probe_val_top1"] and r["selection"] == "val"
    job = json.loads((sweep / "0" / "linear" / "final" / "results.json").read_text())
    assert job["protocol"] == "cached_adam" and job["same_split_as_pretraining"] is True
    assert all(float(r["final_loss"]) > 0 and float(r["wall_s"]) > 0 for r in rows)  # read, not defaulted
    best = [r for r in rows if r["best"] == "True"]  # the highest objective, the first of equals
    assert len(best) == 1 and best[0]["objective"] == max(rows, key=lambda r: float(r["objective"]))["objective"]
    assert (sweep / "summary.md").read_text().count("\n") == 6
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    cli = subprocess.run(
        [sys.executable, "-m", "simclr.jobs.sweep", str(sweep)], cwd=REPO, capture_output=True, text=True
    )
    assert cli.returncode == 0 and "4 jobs" in cli.stdout


def test_failed_job_is_reported_and_the_others_finish(cifar_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = _multirun(cifar_root, sweep, "data.batch_size=1000,32")  # 1000 > the 200 training images
    assert result.returncode == 1
    assert "1 of 2 jobs failed" in result.stderr
    failed = json.loads((sweep / "0" / "status.json").read_text())
    assert failed["status"] == "failed" and "data.batch_size=1000 exceeds" in failed["error"]
    assert json.loads((sweep / "1" / "status.json").read_text())["status"] == "completed"
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()
    rows = summarize(sweep)
    assert [r["status"] for r in rows] == ["failed", "completed"]
    assert [r["best"] for r in rows] == [False, True]  # a failed job is never the best


def test_wandb_offline_sweep_writes_one_run_per_job(cifar_root: Path, tmp_path: Path) -> None:
    """No account, no network: each job of a multirun gets its own finished offline run in one group."""
    sweep = tmp_path / "sweep"
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    args = [
        sys.executable,
        str(REPO / "train_ssl.py"),
        "-m",
        *TINY,
        f"data.root={cifar_root}",
        "data.batch_size=32",
        f"hydra.sweep.dir={sweep}",
        "logger=wandb",
        "loss.temperature=0.2,0.5",
        "probe.enabled=true",
        "probe.epochs=1",
    ]
    result = subprocess.run(
        args, cwd=tmp_path, env={**env_free, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        runs = list((sweep / job / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1
        records = runs[0].read_bytes()
        # The run log is protobuf records: logged keys and the group appear there as plain strings.
        for key in (
            b"train/loss_step",
            b"train/lr",
            b"val/knn_top1",
            b"probe/test_top1",
            b"derived/lr",
            b"temperature",
            str(sweep).encode(),
            b"views/pairs",
            b"embeddings/test_pca",
            b"probe/confusion_matrix",
        ):
            assert key in records, f"job {job}: {key!r} not logged"
        assert len(list(runs[0].parent.glob("files/media/images/*/*.png"))) == 3
    assert "wandb sync" in result.stdout + result.stderr  # each run finished and says how to sync it
