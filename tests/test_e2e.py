"""The scripts as a user runs them: pretrain on a generated dataset, probe its checkpoint, read results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TINY = [
    "model=resnet_tiny",
    "model.width=4",
    "model.head.hidden_dim=32",
    "trainer=cpu",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.download=false",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "data.val_size=50",
    "knn.k=20",
]


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_pretrain_then_probe(cifar_root: Path, tmp_path: Path) -> None:
    ssl = _run(
        "train_ssl.py",
        TINY
        + [
            f"data.root={cifar_root}",
            "trainer.max_epochs=2",
            "trainer.check_val_every_n_epoch=1",
            "hydra.run.dir=ssl_run",
        ],
        tmp_path,
    )
    assert ssl.returncode == 0, ssl.stderr[-3000:]
    ckpt = tmp_path / "ssl_run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (tmp_path / "ssl_run" / "metrics.csv").is_file()

    probe = _run(
        "train_linear.py",
        [
            f"ckpt={ckpt}",
            "trainer=cpu",
            "trainer.max_epochs=3",
            "probe.lr=0.05",
            f"data.root={cifar_root}",
            "data.download=false",
            "data.batch_size=32",
            "data.val_size=50",
            "probe.batch_size=32",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    summary = [line for line in probe.stdout.splitlines() if line.startswith("linear probe: test top-1")]
    assert len(summary) == 1
    results_files = list((tmp_path / "ssl_run" / "linear").glob("last_*/results.json"))
    assert len(results_files) == 1  # next to the pretraining run
    results = json.loads(results_files[0].read_text())
    # Classes of the generated data differ in mean colour: chance is 10%, a working pipeline is far above.
    assert results["test_top1"] > 0.3 and results["ckpt"] == str(ckpt.resolve())
    assert f"{100 * results['test_top1']:.2f}%" in summary[0]


def test_user_errors_are_one_message(tmp_path: Path) -> None:
    missing = _run("train_ssl.py", TINY + [f"data.root={tmp_path / 'empty'}", "hydra.run.dir=run"], tmp_path)
    assert missing.returncode == 2
    assert "error: CIFAR-10 files" in missing.stderr and "data.download=true" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad_ckpt = tmp_path / "x.ckpt"
    bad_ckpt.write_text("not a checkpoint")
    probe = _run("train_linear.py", [f"ckpt={bad_ckpt}", "trainer=cpu"], tmp_path)
    assert probe.returncode == 2 and "is not a readable PyTorch checkpoint" in probe.stderr
    assert "Traceback" not in probe.stderr and bad_ckpt.read_text() == "not a checkpoint"


def test_unknown_key_is_refused_by_hydra(tmp_path: Path) -> None:
    result = _run("train_ssl.py", ["trainer=cpu", "loss.temprature=0.1"], tmp_path)
    assert result.returncode != 0 and "temprature" in result.stderr
