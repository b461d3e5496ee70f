"""What the tests share: a tiny CIFAR-10 in the official python layout, the tiny configs, and one way to run an
entry point (train_ssl.py, train_linear.py, `python -m simclr.jobs.export`, the benchmarks) as a user does.

The fixtures built on these (the tiny dataset, a tiny pretraining config, one pretraining run made once per
session) are in tests/conftest.py. Lightning callbacks that configs name by `_target_` are in tests/callbacks.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickle
import runpy
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

import simclr  # noqa: F401  (registers the config resolvers and schemas)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# The real CIFAR-10 (python batches under REAL_ROOT/cifar-10-batches-py/), for the tests that skip without it.
REAL_ROOT = Path(os.environ.get("CIFAR10_ROOT", REPO / "data"))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# ---- threads -------------------------------------------------------------------------------------------

# The suite's models are tiny (resnet_tiny of width 4, batches of 32): a second intra-op thread buys them
# nothing, and on a 2-core machine that runs anything else the two threads of each op wait for each other.
# A 2-epoch tiny pretraining took 10-20 s with 2 threads beside one busy core, 1.1 s with one. Subprocesses
# (the scripts, DDP workers, the notebook's kernel) inherit OMP_NUM_THREADS; a value the user set is kept.
USER_THREADS = os.environ.get("OMP_NUM_THREADS")


def use_one_thread() -> None:
    """Called once by tests/conftest.py, before any test runs (the reason is above). Timed runs of the real
    recipe ask for every core (`entry_point_env(all_cores=True)`)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# ---- the tiny dataset ----------------------------------------------------------------------------------


def write_cifar10(root: Path, per_batch: int = 40, test_size: int = 100, seed: int = 0) -> Path:
    """Writes root/cifar-10-batches-py/ as the official archive lays it out, with random images.

    Each class has its own mean colour, so the data is learnable; returns the batches folder.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(30, 225, size=(10, 3))

    def batch(n: int, name: str) -> dict:
        labels = rng.integers(0, 10, size=n)
        noise = rng.normal(0, 25, size=(n, 3, 32, 32))
        images = np.clip(palette[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
        return {
            "batch_label": name,
            "labels": [int(v) for v in labels],
            "data": images.reshape(n, 3072),
            "filenames": [f"img_{i:05d}.png" for i in range(n)],
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test_size, "testing batch 1 of 1"), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": CLASSES, "num_vis": 3072}, f)
    return folder


def uint8_images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, h, w) uniformly random uint8 images, the same for the same seed."""
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


class RunsCode:
    """Unpickles as a call of exec on `code`: what a crafted data file can do to a plain pickle.load."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return exec, (self.code,)


# ---- the tiny configs ----------------------------------------------------------------------------------

TINY_MODEL = ["model=resnet_tiny", "model.width=4", "model.head.hidden_dim=32", "model.head.out_dim=16"]
# The tiny dataset: 200 training images (6 steps of 32 an epoch), 100 test images; 5 images per class held
# out for validation, the kNN bank the other 150.
TINY_DATA = ["data.download=false", "data.batch_size=32", "data.eval_batch_size=64", "data.val_size=50", "knn.k=20"]
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TINY_SSL = [
    *TINY_MODEL,
    *TINY_DATA,
    *QUIET,
    "trainer=cpu",
    "trainer.precision=32-true",  # the same numbers on every CPU; tests/training/test_precision.py covers auto and bf16
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.log_every_n_steps=1",
    "checkpoint.every_n_epochs=1",
    "scheduler.warmup_epochs=1",
    "probe.batch_size=32",  # probe.enabled=true: the probe of the tiny run (see TINY_PROBE)
    "probe.lr=0.05",
]
TINY_PROBE = [
    *QUIET,
    "trainer=cpu",
    "trainer.precision=32-true",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "data.download=false",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.val_size=50",
    "probe.batch_size=32",  # the 150 images left after the validation split
    "probe.lr=0.05",  # the 8 steps of 2 epochs need it to leave chance behind
]


def default_augmentation(**overrides: object) -> dict:
    """The default `augmentation` section as a plain dict (what the view pipelines take), with overrides."""
    return {**OmegaConf.to_container(compose_config("train_ssl").augmentation, resolve=True), **overrides}


def compose_config(name: str, overrides: Sequence[str] = (), conf: Path = CONF, hydra: bool = False) -> DictConfig:
    """conf/<name>.yaml with the overrides, as the script composes it (with the hydra node if `hydra`)."""
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=hydra)


def ssl_config(data_root: Path, out: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The tiny pretraining config on the dataset at data_root, writing into `out`."""
    cfg = compose_config("train_ssl", [*TINY_SSL, f"data.root={data_root}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@dataclass(frozen=True)
class TinyRun:
    """A finished run (tests/conftest.py's ssl_run): its directory, its config, and the metrics train_ssl returned."""

    dir: Path
    cfg: DictConfig
    metrics: dict[str, float]

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"


def probe_config(data_root: Path, out: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The tiny linear-probe config on the dataset at data_root, writing into `out`."""
    cfg = compose_config("train_linear", [*TINY_PROBE, f"data.root={data_root}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


# ---- one way to run an entry point ---------------------------------------------------------------------


def entry_point(entry: str, *args: str) -> list[str]:
    """The command line of an entry point: a script of this repository (`train_ssl.py`,
    `benchmarks/throughput.py`) run by path, or a module (`simclr.jobs.export`) run with -m."""
    target = [str(REPO / entry)] if entry.endswith(".py") else ["-m", entry]
    return [sys.executable, *target, *args]


def entry_point_env(all_cores: bool = False, wandb_home: Path | None = None) -> dict[str, str]:
    """The environment a user's shell gives it: this checkout importable, Hydra's own error report off (the
    scripts print one line). `all_cores`: without the suite's one-thread limit (timed runs). `wandb_home`:
    none of the machine's WANDB_* variables (no account, offline runs), W&B's own folders under it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    if all_cores and USER_THREADS is None:
        env.pop("OMP_NUM_THREADS", None)
    if wandb_home is not None:
        env = {k: v for k, v in env.items() if not k.startswith("WANDB_")}
        env.update({f"WANDB_{key}": str(wandb_home / key.lower()) for key in WANDB_FOLDERS})
    return env


WANDB_FOLDERS = ("DIR", "DATA_DIR", "CACHE_DIR", "CONFIG_DIR")


def run_entry_point(
    entry: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float | None = 300
) -> subprocess.CompletedProcess:
    """Runs an entry point to its end in a new process, as a user does; stdout and stderr are captured."""
    return subprocess.run(
        entry_point(entry, *args),
        cwd=cwd,
        env=env or entry_point_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_entry_point_here(entry: str, *args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Runs an entry point as `python <entry> *args` in `cwd` would, but in this process: (exit status, stderr).
    For tests that run many short commands, each of which would spend most of its time importing Lightning in a
    process of its own (4.6 s of a 9 s documented sweep); Hydra's global state and the root logger's handlers are
    restored after."""
    root, stderr = logging.getLogger(), io.StringIO()
    handlers, level = root.handlers[:], root.level
    code = 0
    GlobalHydra.instance().clear()
    with (
        mock.patch.object(sys, "argv", [str(REPO / entry), *args]),
        mock.patch.dict(os.environ, env, clear=True),
        contextlib.chdir(cwd),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            runpy.run_path(str(REPO / entry), run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        finally:
            GlobalHydra.instance().clear()
            for handler in set(root.handlers) - set(handlers):
                handler.close()
            root.handlers[:], root.level = handlers, level
    return code, stderr.getvalue()


def start_entry_point(entry: str, *args: str, cwd: Path = REPO) -> subprocess.Popen:
    """Starts an entry point in a new process (a test that signals it); stderr is a text pipe."""
    return subprocess.Popen(
        entry_point(entry, *args),
        cwd=cwd,
        env=entry_point_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines a script printed."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def one_error_line(stderr: str) -> str:
    """The one `error: ...` line of a refused run, which printed no traceback."""
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


# ---- files ---------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(*roots: Path) -> dict[str, str]:
    """{path: sha256} of every file under the roots: equal before and after means nothing was touched."""
    return {str(p): sha256(p) for root in roots for p in sorted(root.rglob("*")) if p.is_file()}
