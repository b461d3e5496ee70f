"""The benchmarks run end to end on a tiny config and report figures that agree with each other."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from tests.conftest import REPO, compose_config, write_cifar10

TINY = ["--arch", "resnet_tiny", "--width", "4", "--batch", "16", "model.head.hidden_dim=32", "model.head.out_dim=16"]


def run_script(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_throughput_benchmark_reports_consistent_figures(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    timing = ["--warmup", "1", "--steps", "2", "--repeats", "2", "--workers", "0", "--images", "128"]
    done = run_script("throughput.py", [*TINY, *timing, "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    rows = report["rows"]
    assert list(rows) == ["trainer_fit", "bare_step", "baseline_fp32", "baseline_project"]
    for key, row in rows.items():
        assert row["batch"] == 16 and len(row["repeats_s_per_step"]) == 2, key
        assert row["s_per_step"] == pytest.approx(statistics.median(row["repeats_s_per_step"]))
        assert row["views_per_s"] == pytest.approx(2 * 16 / row["s_per_step"])
        assert row["s_per_epoch"] == pytest.approx((50_000 // 16) * row["s_per_step"])
    fit = rows["trainer_fit"]
    assert fit["checkpointing"] and fit["epoch_ends_in_windows"] == 0  # 8 steps an epoch, 6 needed
    assert min(fit["setup_s"], fit["warmup_s"], fit["teardown_s"]) >= 0 and fit["wall_s"] > 0
    assert "float32 contiguous" in rows["baseline_fp32"]["label"]
    assert rows["baseline_project"]["memory_format"] == "channels_last"

    ratios = report["ratios"]
    assert set(ratios) == {"fit_over_bare_step", "fit_over_baseline_fp32", "fit_over_baseline_project"}
    for key, value in ratios.items():
        assert value == pytest.approx(fit["views_per_s"] / rows[key.removeprefix("fit_over_")]["views_per_s"])

    aug = report["augmentation"]
    # Not bounded by 1: two timed steps of each kind on a shared machine can order either way.
    assert aug["s_per_step"] > 0
    assert aug["share_of_bare_step"] == pytest.approx(aug["s_per_step"] / rows["bare_step"]["s_per_step"])
    for key in ("ops_per_view_eager", "sample_params_ops", "apply_ops_eager"):
        assert isinstance(aug[key], int) and aug[key] > 0, key
    assert aug["ops_per_view_eager"] == aug["sample_params_ops"] + aug["apply_ops_eager"]
    assert "ops_per_view_compiled" not in aug  # --compile-ops was not given

    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_count"] >= 1 and env["device"]
    assert report["args"]["batch"] == 16 and report["config"]["arch"] == "resnet_tiny"
    assert "| row | views/s |" in done.stdout and "trainer.fit" in done.stdout


def test_sync_check_runs_on_cpu_and_says_it_checked_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    done = run_script("sync_check.py", [*TINY, "--steps", "4", "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["steps_run"] == 4
    if torch.cuda.is_available():
        assert "no synchronisation" in done.stdout
    else:
        assert "nothing checked" in done.stdout and record["checked_steps"] == 0


def test_checkpoints_can_be_left_out_of_the_timed_run(tmp_path: Path) -> None:
    from simclr.train_ssl import train_ssl

    root = tmp_path / "data"
    write_cifar10(root, per_batch=16)
    cfg = compose_config(
        "train_ssl",
        ["trainer=cpu", "model=resnet_tiny", "model.width=4", "data.batch_size=16", f"data.root={root}"]
        + ["data.val_size=20", "knn.k=20"]
        + ["data.download=false", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.trainer.callbacks = [{"_target_": "benchmarks.common.NoCheckpoints"}]
    train_ssl(cfg)
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_epoch_plan_fits_the_budget() -> None:
    from benchmarks.gpu_check_report import plan_epochs

    fit = {"batch": 512, "s_per_step": 0.02, "warmup": 20, "warmup_s": 5.4, "setup_s": 8.0, "teardown_s": 2.0}
    epochs, s_epoch = plan_epochs(fit, budget_s=300, max_epochs=1000, fixed_s=15, limit=None)
    assert s_epoch == pytest.approx(97 * 0.02)
    once = 8.0 + 2.0 + (5.4 - 20 * 0.02) + 15
    assert epochs == int((300 - once) // s_epoch) and once + epochs * s_epoch <= 300
    assert plan_epochs(fit, 300, 100, 15, None)[0] == 100  # capped
    assert plan_epochs(fit, 10, 100, 15, None)[0] == 1  # at least one epoch


@pytest.mark.parametrize("script", ["gpu_check.sh", "prepare_gpu_check.sh"])
def test_shell_scripts_parse(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
