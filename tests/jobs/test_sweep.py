"""Hydra multirun through the real script: one directory per job, probes, a job that fails alone, the summary,
W&B runs. A 2 x 2 grid, run once (the temperature crossed with the learning rate, whose 0 breaks a rule), and a
sweep of two jobs logging to W&B offline."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from simclr.jobs.sweep import main, summarize
from tests.helpers import TINY_SSL, entry_point_env, run_entry_point

GRID = ["loss.temperature=0.2,0.5", "optimizer.lr=0,0.001"]  # jobs 0 and 2 draw optimizer.lr=0
COMPLETED, FAILED = ("1", "3"), ("0", "2")


@pytest.fixture(scope="module")
def grid(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The grid with a probe after each job: (sweep dir, the finished process)."""
    return _multirun(cifar_root, tmp_path_factory.mktemp("grid"), *GRID, "probe.enabled=true", "probe.epochs=2")


@pytest.fixture(scope="module")
def wandb_sweep(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Two jobs logging to W&B (offline: no account, no network), each with a probe: (sweep dir, process)."""
    base = tmp_path_factory.mktemp("wandb_sweep")
    args = ["loss.temperature=0.2,0.5", "probe.enabled=true", "probe.epochs=1", "logger=wandb"]
    return _multirun(cifar_root, base, *args, env=entry_point_env(wandb_home=base / "wandb_home"))


def _multirun(cifar_root: Path, base: Path, *overrides: str, env: dict | None = None) -> tuple[Path, object]:
    sweep = base / "sweep"
    args = ["-m", *TINY_SSL, f"data.root={cifar_root}", f"hydra.sweep.dir={sweep}", "trainer.max_epochs=1"]
    return sweep, run_entry_point("train_ssl.py", *args, *overrides, cwd=base, env=env)


def _rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_each_job_gets_its_directory_its_probe_and_a_row_of_the_summary(grid: tuple) -> None:
    sweep, _ = grid
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0", "1", "2", "3"]
    for job in COMPLETED:
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file() and (sweep / job / "metrics.csv").is_file()
        assert json.loads((sweep / job / "status.json").read_text())["status"] == "completed"
        assert (sweep / job / "linear" / "final" / "results.json").is_file()
    # The end-of-sweep callback wrote the summary; the command rewrites it the same way.
    rows = _rows(sweep)
    grid = [f"loss.temperature={t} optimizer.lr={lr}" for t in ("0.2", "0.5") for lr in ("0", "0.001")]
    assert [r["overrides"] for r in rows] == grid
    for r in (rows[1], rows[3]):  # validation and test figures side by side; the objective is the validation one
        assert r["status"] == "completed"
        assert float(r["val_knn_top1"]) > 0.3 and float(r["test_knn_top1"]) > 0.3
        assert float(r["probe_val_top1"]) > 0.3 and float(r["probe_test_top1"]) > 0.3
        assert r["objective"] == r["probe_val_top1"] and r["selection"] == "val"
        assert float(r["final_loss"]) > 0 and float(r["wall_s"]) > 0  # read, not defaulted
    job = json.loads((sweep / "1" / "linear" / "final" / "results.json").read_text())
    assert job["protocol"] == "cached_adam" and job["same_split_as_pretraining"] is True
    best = [r for r in rows if r["best"] == "True"]  # the highest objective, the first of equals
    assert len(best) == 1 and best[0]["objective"] == max(rows[1::2], key=lambda r: float(r["objective"]))["objective"]
    assert (sweep / "summary.md").read_text().count("\n") == 6
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_a_job_that_breaks_a_rule_fails_alone_and_is_reported(grid: tuple) -> None:
    sweep, done = grid
    assert done.returncode == 1, done.stderr[-3000:]  # the sweep report: 2 of 4 jobs failed
    assert "2 of 4 jobs failed" in done.stderr
    for job in FAILED:  # refused by the rules in the job, before anything but Hydra's record and the log
        status = json.loads((sweep / job / "status.json").read_text())
        assert status["status"] == "failed" and status["error"].startswith("optimizer.lr=0 must be > 0"), status
        assert sorted(p.name for p in (sweep / job).iterdir()) == [".hydra", "status.json", "train_ssl.log"]
    rows = summarize(sweep)
    assert [r["status"] for r in rows] == ["failed", "completed", "failed", "completed"]
    assert not rows[0]["best"] and not rows[2]["best"]  # a failed job is never the best


def test_the_summary_command(grid: tuple, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`python -m simclr.jobs.sweep <dir>` rewrites the summary of a finished sweep and prints it."""
    sweep, _ = grid
    written = (sweep / "summary.md").read_text()
    monkeypatch.setattr(sys, "argv", ["sweep", str(sweep)])
    main()
    out = capsys.readouterr().out
    assert out.startswith(written) and f"4 jobs; wrote summary.md, summary.csv, summary.png in {sweep}" in out
    assert (sweep / "summary.md").read_text() == written


def test_each_job_writes_its_own_offline_wandb_run(wandb_sweep: tuple) -> None:
    """No account, no network: each job of a multirun gets its own finished offline run in one group."""
    sweep, done = wandb_sweep
    assert done.returncode == 0, done.stderr[-3000:]
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
    assert "wandb sync" in done.stdout + done.stderr  # each run finished and says how to sync it
