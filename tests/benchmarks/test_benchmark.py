"""The benchmarks run end to end on a tiny config; the torchvision rows run the reference path of the config."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from simclr.training.profiling import count_ops
from simclr.views.augment import SimCLRAugment
from tests.helpers import REPO, TINY_MODEL, compose_config, run_entry_point, uint8_images, write_cifar10

# The tiny model through the scripts' shortcuts and Hydra overrides; float32, so that the op counts are those
# of an eager float32 view on any CPU.
TINY = ["--arch", "resnet_tiny", "--width", "4", "--batch", "16", *TINY_MODEL[2:], "trainer.precision=32-true"]


def test_throughput_benchmark_runs_every_row(tmp_path: Path) -> None:
    """`python benchmarks/throughput.py`, as benchmarks/gpu_check.sh runs it, on a tiny config."""
    out = tmp_path / "throughput.json"
    timing = ["--warmup", "1", "--steps", "2", "--repeats", "2", "--workers", "0", "--images", "128"]
    done = run_entry_point("benchmarks/throughput.py", *TINY, *timing, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())

    rows = report["rows"]
    assert list(rows) == ["trainer_fit", "bare_step", "baseline_fp32", "baseline_project"]
    for key, row in rows.items():
        assert row["batch"] == 16 and len(row["repeats_s_per_step"]) == 2, key
    fit = rows["trainer_fit"]
    assert fit["checkpointing"] and fit["epoch_ends_in_windows"] == 0  # 8 steps an epoch, 6 needed
    # The parts measured outside the timed windows, each under way, and together less than the whole run.
    assert 0 < min(fit["setup_s"], fit["warmup_s"], fit["teardown_s"])
    assert fit["setup_s"] + fit["warmup_s"] + fit["teardown_s"] < fit["wall_s"]
    assert rows["baseline_fp32"]["label"] == "torchvision reference (per-image), 0 workers, float32 contiguous"
    assert rows["baseline_project"]["memory_format"] == "channels_last"
    assert set(report["ratios"]) == {"fit_over_bare_step", "fit_over_baseline_fp32", "fit_over_baseline_project"}

    aug = report["augmentation"]
    assert aug["s_per_step"] > 0
    # The op counts of one view of the default augmentation, measured here apart from the benchmark's code.
    images, cpu = uint8_images(16), torch.device("cpu")
    view = count_ops(SimCLRAugment(), images)[1]
    draw = count_ops(SimCLRAugment().sample_params, 16, 32, 32, cpu)[1]
    apply = count_ops(SimCLRAugment().apply, images, SimCLRAugment().sample_params(16, 32, 32, cpu))[1]
    assert (aug["ops_per_view_eager"], aug["sample_params_ops"], aug["apply_ops_eager"]) == (
        view.op_count,
        draw.op_count,
        apply.op_count,
    )
    assert aug["syncs_per_view_eager"] == 0 and "ops_per_view_compiled" not in aug  # --compile-ops was not given

    util = report["utilisation"]  # the figures themselves: tests/benchmarks/test_utilisation.py
    assert util["model_flops_per_s"] == util["flops_per_view"] * fit["views_per_s"]
    assert util["mfu"] == util["model_flops_per_s"] / util["peak"]["flops_per_s"]
    assert set(util["phases_s_per_step"]) == {
        "views",
        "encoder forward",
        "head, loss and gather",
        "backward",
        "optimizer",
        "rest",
    }
    assert "MFU" in done.stdout

    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_count"] >= 1 and env["device"]
    assert report["args"]["batch"] == 16 and report["config"]["arch"] == "resnet_tiny"
    assert "| row | views/s |" in done.stdout and "trainer.fit" in done.stdout


def test_torchvision_rows_run_the_reference_path_of_the_config() -> None:
    """The baseline is `augmentation.backend=torchvision`'s own loader: the config's crop ratio and blur,
    and the device batches' image order."""
    from benchmarks.throughput_rows import reference_batches
    from simclr.data.device_batches import DeviceBatches

    cfg = compose_config(
        "train_ssl", ["augmentation.crop_ratio=[0.5,2.0]", "augmentation.blur_p=0.4", "data.batch_size=16", "seed=5"]
    )
    images = uint8_images(40)
    loader = reference_batches(cfg, images, workers=0, device=torch.device("cpu"))
    crop, *_, blur = loader.loader.dataset.transform.transforms[:5]
    assert crop.ratio == (0.5, 2.0) and blur.p == 0.4 and type(blur.transforms[0]).__name__ == "GaussianBlur"
    v1, v2, _, indices = next(iter(loader))
    assert v1.shape == v2.shape == (16, 3, 32, 32) and v1.dtype == torch.float32
    order = DeviceBatches(images, torch.zeros(40, dtype=torch.long), batch_size=16, seed=5)
    assert indices.tolist() == order.permutation(0)[:16].tolist()


def test_sync_check_runs_on_cpu_and_says_it_checked_nothing(tmp_path: Path) -> None:
    """In its own process, as the GPU check runs it (in this one, a W&B run started after it recorded nothing)."""
    out = tmp_path / "sync.json"
    done = run_entry_point("benchmarks/sync_check.py", *TINY, "--steps", "4", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["steps_run"] == 4
    if torch.cuda.is_available():
        assert "no synchronisation" in done.stdout
    else:
        assert "nothing checked" in done.stdout and record["checked_steps"] == 0


def test_checkpoints_can_be_left_out_of_the_timed_run(tmp_path: Path) -> None:
    from simclr.jobs.train_ssl import train_ssl

    root = tmp_path / "data"
    write_cifar10(root, per_batch=16)
    cfg = compose_config(
        "train_ssl",
        [*TINY_MODEL, "trainer=cpu", "data.batch_size=16", f"data.root={root}", "data.val_size=20", "knn.k=20"]
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
    # 50,000 // 512 = 97 steps of 0.02 s; paid once: 8 + 2 + (5.4 - 20 x 0.02) + 15 = 30 s; 270 // 1.94 = 139.
    assert (epochs, s_epoch) == (139, pytest.approx(1.94))
    assert plan_epochs(fit, 300, 100, 15, None)[0] == 100  # capped
    assert plan_epochs(fit, 10, 100, 15, None)[0] == 1  # at least one epoch


@pytest.mark.parametrize("script", ["gpu_check.sh", "prepare_gpu_check.sh"])
def test_shell_scripts_parse(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("matmul_weight_grad", ["false", "true"])
def test_the_documented_weight_gradient_lever_runs_both_ways(tmp_path: Path, matmul_weight_grad: str) -> None:
    """docs/benchmarks.md's pair, `--skip-baseline experiment=quickstart model.matmul_weight_grad=false|true`,
    on a tiny network: each side runs through trainer.fit and its report says which side it measured."""
    out = tmp_path / "throughput.json"
    timing = ["--warmup", "1", "--steps", "2", "--repeats", "1", "--images", "128", "--width", "4", "--batch", "16"]
    lever = ["experiment=quickstart", f"model.matmul_weight_grad={matmul_weight_grad}", "trainer.precision=32-true"]
    done = run_entry_point(
        "benchmarks/throughput.py", "--skip-baseline", *timing, "--out", str(out), *lever, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["config"]["matmul_weight_grad"] is (matmul_weight_grad == "true")
    assert report["config"]["arch"] == "resnet_tiny" and report["rows"]["trainer_fit"]["views_per_s"] > 0
