"""What the benchmark scripts share: random CIFAR-10 files, composed configs, a step timer, the machine.

Nothing here changes what `train_ssl` does: the callbacks below are attached the way a user attaches
one (`trainer.callbacks=[{_target_: ...}]`), so the benchmarks measure the run a user gets.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/, not the repository, on the path
    sys.path.insert(0, str(REPO))

CIFAR_TRAIN_IMAGES = 50_000  # images in one epoch of the real training split
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_random_cifar10(root: str | Path, train_images: int, test_images: int = 200, seed: int = 0) -> Path:
    """Writes root/cifar-10-batches-py/ in the official python layout, filled with uniform random uint8 images.

    Five training batch files share `train_images` images, `test_batch` holds `test_images`; returns
    the folder. Throughput does not depend on the pixels, so random images stand in for the real ones.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name: str, n: int, label: str) -> None:
        entry = {
            "batch_label": label,
            "labels": [int(v) for v in rng.integers(0, 10, size=n)],
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"random_{i:05d}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=4)

    for i, n in enumerate(np.array_split(np.arange(train_images), 5), start=1):
        dump(f"data_batch_{i}", len(n), f"training batch {i} of 5")
    dump("test_batch", test_images, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": -(-train_images // 5), "label_names": CLASSES, "num_vis": 3072}, f)
    return folder


def default_trainer_override(overrides: list[str]) -> list[str]:
    """`trainer=gpu` where CUDA is present, else `trainer=cpu`, unless the overrides choose a trainer."""
    if any(o.startswith(("trainer=", "+trainer=")) for o in overrides):
        return []
    return ["trainer=gpu" if torch.cuda.is_available() else "trainer=cpu"]


def benchmark_overrides(args: argparse.Namespace, root: Path, *extra: str) -> list[str]:
    """The overrides both benchmark scripts compose `train_ssl` with: the device's trainer, the
    --arch/--width/--batch shortcuts, the data in `root`, the kNN pass off (it is not what is measured;
    with random images there are no labels to validate either), then the user's own overrides."""
    shorthand = [f"model={args.arch}"] if args.arch else []
    shorthand += [f"model.width={args.width}"] if args.width else []
    shorthand += [f"data.batch_size={args.batch}"] if args.batch else []
    return [
        *default_trainer_override(args.overrides),
        *shorthand,
        *extra,
        f"data.root={root}",
        "data.download=false",
        *([] if args.data_root else ["data.val_size=0"]),
        "trainer.limit_val_batches=0",
        *args.overrides,
    ]


def compose_ssl_config(overrides: list[str], output_dir: str | Path) -> Any:
    """The `train_ssl` config composed as `python train_ssl.py OVERRIDES` would compose it, writing to output_dir."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    import simclr  # noqa: F401  (registers the config resolvers)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train_ssl", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def config_device(cfg: Any) -> torch.device:
    """The device `cfg.trainer` trains on (one device)."""
    gpu = str(cfg.trainer.get("accelerator", "cpu")) in ("gpu", "cuda") or (
        cfg.trainer.get("accelerator") == "auto" and torch.cuda.is_available()
    )
    return torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")


def autocast_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype Lightning uses for `cfg.trainer.precision` (`auto` resolved as the Trainer resolves
    it, simclr.training.precision) on `device`, or None (float32)."""
    from simclr.training.precision import choose_precision

    precision = choose_precision(cfg.trainer).value
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16") and device.type == "cuda":
        return torch.float16
    return None


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on the CPU, whose ops run as they are called)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_windows(step: Callable[[], None], device: torch.device, warmup: int, steps: int, repeats: int) -> list[float]:
    """Runs `warmup` steps, then `repeats` windows of `steps` steps; seconds per window.

    The device is synchronised at every clock read (the start and end of each window) and nowhere else.
    """
    for _ in range(warmup):
        step()
    sync(device)
    marks = [time.perf_counter()]
    for _ in range(repeats):
        for _ in range(steps):
            step()
        sync(device)
        marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]


class StepTimer(pl.Callback):
    """Times steady-state steps inside `trainer.fit`: `repeats` windows of `steps` steps after `warmup` steps.

    Window k runs from the start of step warmup + k * steps to the start of step warmup + (k + 1) * steps,
    so it holds `steps` whole iterations of Lightning's loop: fetching the batch, the hooks of every
    callback, the optimizer step, logging on log steps, and epoch ends (checkpoints) that fall inside.
    The device is synchronised at each clock read only. After the last window the Trainer is asked to
    stop. The last instance is kept in `StepTimer.last`; times are `time.perf_counter()` seconds.
    """

    last: StepTimer | None = None

    def __init__(self, warmup: int, steps: int, repeats: int = 1) -> None:
        if warmup < 0 or steps < 1 or repeats < 1:
            raise ValueError(f"warmup={warmup} >= 0, steps={steps} >= 1 and repeats={repeats} >= 1 are needed")
        self.warmup, self.steps, self.repeats = warmup, steps, repeats
        self.marks: list[float] = []  # clock at each window boundary, s
        self.images: list[int] = []  # images of this process per window
        self.epoch_ends = 0  # epoch ends inside the windows
        self.train_start: float | None = None
        StepTimer.last = self

    @property
    def timing(self) -> bool:
        return 1 <= len(self.marks) <= self.repeats

    @property
    def windows_s(self) -> list[float]:
        """Seconds per completed window."""
        return [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        since = trainer.global_step - self.warmup
        if since >= 0 and since % self.steps == 0 and len(self.marks) <= self.repeats:
            sync(pl_module.device)
            self.marks.append(time.perf_counter())
            if len(self.marks) == self.repeats + 1:
                trainer.should_stop = True  # measured: the run ends after this step
                return
            self.images.append(0)
        if self.timing:
            self.images[-1] += len(batch[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.timing:
            self.epoch_ends += 1


class NoCheckpoints(pl.Callback):
    """Removes the run's checkpoint callbacks when fitting starts: `train_ssl` always adds one, and
    `trainer.enable_checkpointing=false` refuses a Trainer that has one."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from pytorch_lightning.callbacks import Checkpoint

        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, Checkpoint)]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_smi(field: str) -> str | None:
    """One `nvidia-smi --query-gpu` field of the first GPU, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def environment() -> dict[str, Any]:
    """Device name, driver, library versions and CPU count: what a figure must be reported with."""
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else f"cpu: {_cpu_name()}",
        "driver": nvidia_smi("driver_version"),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def add_model_args(parser: argparse.ArgumentParser, overrides_help: str) -> None:
    """The arguments both benchmark scripts take: Hydra overrides, then shortcuts for the usual ones."""
    parser.add_argument("overrides", nargs="*", help=overrides_help)
    parser.add_argument("--arch", help="model=ARCH (default: the config's, resnet18)")
    parser.add_argument("--width", type=int, help="model.width (default: the config's)")
    parser.add_argument("--batch", type=int, help="data.batch_size, images per step (default: the config's, 512)")
