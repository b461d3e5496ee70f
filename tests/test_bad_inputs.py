"""Every bad input named in one message with its fix, and nothing on disk lost or overwritten."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from simclr.config.rules import check
from simclr.errors import CheckpointError, ConfigError, DataError, SimCLRError
from simclr.jobs.train_linear import train_linear
from simclr.jobs.train_ssl import train_ssl
from tests.conftest import TINY_SSL, compose_config, probe_config, write_cifar10


def _tree_digest(*roots: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for r in roots for p in sorted(r.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ssl_checkpoint: Path, cifar_root: Path) -> dict[str, Path]:
    """Damaged datasets and checkpoints of every wrong kind, made once."""
    base = tmp_path_factory.mktemp("bad")
    truncated = write_cifar10(base / "truncated").parent
    path = truncated / "cifar-10-batches-py" / "data_batch_4"
    os.truncate(path, 1000)
    foreign = write_cifar10(base / "foreign").parent
    with open(foreign / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"rows": [1, 2, 3]}, f)
    runs_code = write_cifar10(base / "runs_code").parent
    with open(runs_code / "cifar-10-batches-py" / "data_batch_5", "wb") as f:  # would create base/ran.txt
        pickle.dump({"data": _RunsCode(f"open({str(base / 'ran.txt')!r}, 'w')"), "labels": [0]}, f)
    damaged = base / "damaged_run" / "checkpoints"
    damaged.mkdir(parents=True)
    shutil.copy2(ssl_checkpoint, damaged / "epoch0000.ckpt")
    (damaged / "last.ckpt").write_bytes(ssl_checkpoint.read_bytes()[:5000])  # a copy cut short
    not_ckpt = base / "notes.ckpt"
    not_ckpt.write_text("these are my notes, not a checkpoint")
    other_model = base / "resnet.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 512)}, "epoch": 3}, other_model)
    other_arch = base / "other_arch.ckpt"
    ckpt = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    ckpt["simclr_config"]["model"]["arch"] = "resnet18"
    torch.save(ckpt, other_arch)
    train_linear(probe_config(cifar_root, base / "probe_run", [f"ckpt={ssl_checkpoint}", "trainer.max_epochs=1"]))
    return {
        "truncated": truncated,
        "foreign": foreign,
        "not_ckpt": not_ckpt,
        "other_model": other_model,
        "other_arch": other_arch,
        "probe_ckpt": base / "probe_run" / "checkpoints" / "probe.ckpt",
        "missing_root": base / "no_data_here",
        "runs_code": runs_code,
        "damaged_run": damaged.parent,
        "base": base,
    }


class _RunsCode:
    """Unpickles as a call of exec on `code`."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return exec, (self.code,)


def _ssl(root: str, *overrides: str) -> Callable[[Path], object]:
    """train_ssl.py's job: the config checked (simclr.config.rules.check, as the script does first), then run."""

    def run(out: Path) -> object:
        cfg = compose_config(
            "train_ssl", [*TINY_SSL, f"data.root={root}", "data.download=false", *overrides, f"paths.output_dir={out}"]
        )
        check(cfg)
        return train_ssl(cfg)

    return run


def _probe(cifar_root: Path, ckpt: str, *overrides: str) -> Callable[[Path], object]:
    def run(out: Path) -> object:
        cfg = probe_config(cifar_root, out, [f"ckpt={ckpt}", *overrides])
        check(cfg)
        return train_linear(cfg)

    return run


CASES = {
    # name: (job factory(files, cifar_root), error class, message pattern)
    "data root missing, download off": (
        lambda f, r: _ssl(f["missing_root"]),
        DataError,
        r"missing in .*no_data_here.*data\.download=true",
    ),
    "truncated batch file": (
        lambda f, r: _ssl(f["truncated"]),
        DataError,
        r"data_batch_4 is truncated or not a CIFAR-10 python batch.*delete",
    ),
    "batch file of the wrong format": (
        lambda f, r: _ssl(f["foreign"]),
        DataError,
        r"data_batch_2 is not a CIFAR-10 python batch",
    ),
    "batch file that would run code": (
        lambda f, r: _ssl(f["runs_code"]),
        DataError,
        r"data_batch_5 was refused: loading it would build builtins\.exec, which no CIFAR-10 python batch holds",
    ),
    "damaged checkpoint": (
        lambda f, r: _probe(r, f["damaged_run"]),
        CheckpointError,
        r"damaged_run/checkpoints/last\.ckpt is not a readable PyTorch checkpoint: it is truncated .*; the newest "
        r"intact checkpoint beside it is .*damaged_run/checkpoints/epoch0000\.ckpt \(end of epoch 0\): pass ckpt=",
    ),
    "checkpoint path missing": (
        lambda f, r: _probe(r, f["base"] / "nope.ckpt"),
        CheckpointError,
        r"nope\.ckpt does not exist.*checkpoints/last\.ckpt",
    ),
    "file that is not a checkpoint": (
        lambda f, r: _probe(r, f["not_ckpt"]),
        CheckpointError,
        r"notes\.ckpt is not a readable PyTorch checkpoint",
    ),
    "checkpoint of another program": (
        lambda f, r: _probe(r, f["other_model"]),
        CheckpointError,
        r"resnet\.pt is a PyTorch file but not a checkpoint of this project",
    ),
    "probe checkpoint where a pretraining one is expected": (
        lambda f, r: _ssl(r, f"ckpt_path={f['probe_ckpt']}"),
        CheckpointError,
        r"probe\.ckpt is a probe checkpoint, but a pretrain checkpoint is needed",
    ),
    "checkpoint whose weights are another architecture's": (
        lambda f, r: _probe(r, f["other_arch"]),
        CheckpointError,
        r"do not match the architecture .*resnet18",
    ),
    "temperature <= 0": (lambda f, r: _ssl(r, "loss.temperature=0"), ConfigError, r"loss\.temperature=0 must be > 0"),
    "k=0 neighbours (a meaningless kNN accuracy)": (
        lambda f, r: _ssl(r, "knn.k=0"),
        ConfigError,
        r"^knn\.k=0 must be an integer >= 1; neighbours that vote",
    ),
    "probe of zero epochs": (
        lambda f, r: _probe(r, f["not_ckpt"], "probe.epochs=0"),
        ConfigError,
        r"^probe\.epochs=0 must be an integer >= 1",
    ),
    "momentum of 1 (never forgets)": (
        lambda f, r: _ssl(r, "optimizer=sgd", "optimizer.momentum=1.0"),
        ConfigError,
        r"^optimizer\.momentum=1 must be in \[0, 1\)",
    ),
    "batch size larger than the dataset": (
        lambda f, r: _ssl(r, "data.batch_size=512"),
        DataError,
        r"data\.batch_size=512 exceeds the 200 training images.*lower",
    ),
    "crop scale outside (0, 1]": (
        lambda f, r: _ssl(r, "augmentation.crop_scale=[0.2,1.5]"),
        ConfigError,
        r"augmentation\.crop_scale=\[0\.2, 1\.5\]",
    ),
    "unknown optimizer name": (
        lambda f, r: _ssl(r, "optimizer.name=adagrad"),
        ConfigError,
        r"optimizer\.name=adagrad does not match the optimizer group's keys \(optimizer=adam\)",
    ),
    "bad trainer value": (
        lambda f, r: _ssl(r, "trainer.precision=17"),
        ConfigError,
        r"trainer settings are invalid: .*17.*conf/trainer",
    ),
    "bad trainer accelerator": (
        lambda f, r: _ssl(r, "trainer.accelerator=abacus"),
        ConfigError,
        r"trainer settings are invalid: .*abacus",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named_and_nothing_is_lost(
    case: str, files: dict[str, Path], cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path
) -> None:
    factory, error, pattern = CASES[case]
    watched = [files["base"], cifar_root, ssl_checkpoint.parent]
    before = _tree_digest(*watched)
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        factory(files, cifar_root)(out)
    message = str(caught.value)
    assert isinstance(caught.value, SimCLRError)
    assert re.search(pattern, message), message
    assert "\n" not in message.strip(), "one message, one line"
    assert _tree_digest(*watched) == before
    assert not (out / "checkpoints").exists()
