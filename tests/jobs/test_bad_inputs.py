"""Every bad input a job meets named in one message with its fix, and nothing on disk lost or overwritten.

Through the jobs (`train_ssl(cfg)`, `train_linear(cfg)` after `check(cfg)`, as the scripts run them); one case
per place a job refuses an input. The ways a file can be wrong for each reader are tested at the reader:
data files in tests/data/test_data.py, damaged checkpoints in tests/training/test_resilience.py, config values in
tests/config/test_schema.py, exports in tests/jobs/test_export.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from simclr.config.rules import check
from simclr.errors import CheckpointError, ConfigError, DataError, SimCLRError
from simclr.jobs.train_linear import train_linear
from simclr.jobs.train_ssl import train_ssl
from simclr.training.checkpoints import KIND_KEY
from tests.helpers import probe_config, ssl_config, tree_digest


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, ssl_checkpoint: Path) -> dict[str, Path]:
    """Checkpoints of every wrong kind, made once."""
    base = tmp_path_factory.mktemp("bad")
    not_ckpt = base / "notes.ckpt"
    not_ckpt.write_text("these are my notes, not a checkpoint")
    other_model = base / "resnet.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 512)}, "epoch": 3}, other_model)
    other_arch = base / "other_arch.ckpt"
    ckpt = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    ckpt["simclr_config"]["model"]["arch"] = "resnet18"
    torch.save(ckpt, other_arch)
    ckpt = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    # What tells a probe checkpoint (train_linear.py writes a real one: tests/training/test_probe.py).
    ckpt[KIND_KEY] = "probe"
    torch.save(ckpt, base / "probe.ckpt")
    return {
        "not_ckpt": not_ckpt,
        "other_model": other_model,
        "other_arch": other_arch,
        "probe_ckpt": base / "probe.ckpt",
        "missing_root": base / "no_data_here",
        "base": base,
    }


def _ssl(root: str, *overrides: str) -> Callable[[Path], object]:
    """train_ssl.py's job: the config checked (simclr.config.rules.check, as the script does first), then run."""

    def run(out: Path) -> object:
        cfg = ssl_config(Path(root), out, overrides)
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
    "batch size larger than the dataset": (
        lambda f, r: _ssl(r, "data.batch_size=512"),
        DataError,
        r"data\.batch_size=512 exceeds the 200 training images.*lower",
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
    before = tree_digest(*watched)
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        factory(files, cifar_root)(out)
    message = str(caught.value)
    assert isinstance(caught.value, SimCLRError)
    assert re.search(pattern, message), message
    assert "\n" not in message.strip(), "one message, one line"
    assert tree_digest(*watched) == before
    assert not (out / "checkpoints").exists()
