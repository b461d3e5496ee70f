"""Runs that survive: kill and resume, divergence, atomic checkpoints, bounded checkpoints, bad input."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.checkpoints import find_checkpoint, resolve_ckpt_path
from simclr.errors import CheckpointError
from simclr.resilience import AtomicCheckpointIO, DivergenceError
from simclr.train_ssl import train_ssl
from tests.conftest import REPO, TINY_SSL

EPOCHS = 4


def _script_args(cifar_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train_ssl.py"),
        *TINY_SSL,
        f"data.root={cifar_root}",
        "data.download=false",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.check_val_every_n_epoch=100",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _losses(run: Path) -> dict[int, float]:
    """train/loss_step by step; a step logged twice (replayed after a resume) keeps its last value."""
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = subprocess.run(_script_args(cifar_root, run), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return run


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_same_weights(cifar_root: Path, tmp_path: Path, uninterrupted: Path, sig) -> None:
    run = tmp_path / "run"
    slow = "+trainer.callbacks=[{_target_: tests.callbacks.SlowDown, seconds: 0.3}]"
    proc = subprocess.Popen(
        _script_args(cifar_root, run, slow), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while not (run / "checkpoints" / "epoch0001.ckpt").exists():  # two epochs done, the third under way
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in stderr and "ckpt_path=last" in stderr
    killed_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert killed_at["epoch"] == 1  # the last complete epoch, intact

    resumed = subprocess.run(
        _script_args(cifar_root, run, "ckpt_path=last"), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref, got = _weights(uninterrupted), _weights(run)
    for name, value in ref.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)
    ref_losses, got_losses = _losses(uninterrupted), _losses(run)
    assert sorted(got_losses) == sorted(ref_losses)  # the metrics logged before the kill were kept
    for step, loss in ref_losses.items():
        assert got_losses[step] == pytest.approx(loss, abs=1e-6), step


def test_resume_target_resolution(tmp_path: Path) -> None:
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "epoch0000.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path(str(tmp_path / "run"), tmp_path) == ckpts / "epoch0000.ckpt"
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt_path(str(tmp_path / "run"), tmp_path) == ckpts / "last.ckpt"
    assert resolve_ckpt_path("last", tmp_path / "run") == ckpts / "last.ckpt"
    with pytest.raises(CheckpointError, match="ckpt_path=last: no .*hydra.run.dir"):
        resolve_ckpt_path("last", tmp_path / "elsewhere")
    assert resolve_ckpt_path(None, tmp_path) is None
    assert resolve_ckpt_path("auto", tmp_path / "run") == ckpts / "last.ckpt"
    assert resolve_ckpt_path("auto", tmp_path / "fresh") is None


def test_find_checkpoint_of_a_file_or_a_run_directory(tmp_path: Path) -> None:
    """What train_linear.py ckpt=, python -m simclr.export ckpt= and ckpt_path=<dir> all resolve with."""
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for name in ("epoch0001.ckpt", "epoch0000.ckpt"):  # written in this order: the first is older
        (ckpts / name).write_bytes(b"x")
        time.sleep(0.01)
    os.utime(ckpts / "epoch0001.ckpt", (time.time() + 5, time.time() + 5))
    assert find_checkpoint(tmp_path / "run") == ckpts / "epoch0001.ckpt"  # the newest, not the last by name
    (ckpts / "last.ckpt").write_bytes(b"x")
    assert find_checkpoint(tmp_path / "run") == ckpts / "last.ckpt"
    assert find_checkpoint(ckpts) == ckpts / "last.ckpt"  # the checkpoints folder itself
    assert find_checkpoint(ckpts / "epoch0000.ckpt") == ckpts / "epoch0000.ckpt"
    assert find_checkpoint(tmp_path / "missing.ckpt") == tmp_path / "missing.ckpt"  # read_checkpoint reports it
    (tmp_path / "empty").mkdir()
    for arg in ("ckpt", "ckpt_path"):
        with pytest.raises(CheckpointError) as err:
            find_checkpoint(tmp_path / "empty", arg=arg)
        assert str(err.value) == (
            f"{arg}={tmp_path / 'empty'} is a directory without checkpoints/last.ckpt or any other .ckpt file; pass "
            f"the checkpoint file itself, e.g. {arg}={tmp_path / 'empty'}/checkpoints/<name>.ckpt, or the directory "
            f"of a pretraining run"
        )
    with pytest.raises(CheckpointError, match=r"^ckpt_path=.*empty is a directory without"):
        resolve_ckpt_path(str(tmp_path / "empty"), tmp_path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("check_every", [1, 1000])
def test_divergence_stops_without_overwriting_the_last_good_checkpoint(ssl_cfg: DictConfig, check_every: int) -> None:
    """Poison a weight in epoch 1; with check_every=1000 the loss check never fires, the save guard does."""
    run = Path(ssl_cfg.paths.output_dir)
    with open_dict(ssl_cfg):
        ssl_cfg.divergence.check_every_n_steps = check_every
        ssl_cfg.trainer.callbacks = [{"_target_": "tests.callbacks.PoisonWeights", "step": 8}]  # 6 steps per epoch
        ssl_cfg.trainer.max_epochs = 3
    with pytest.raises(
        DivergenceError,
        match=r"training diverged at step \d+ .*last good checkpoint.*kept.*"
        r"learning rate.*loss.temperature.*trainer.precision",
    ):
        train_ssl(ssl_cfg)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    first = torch.load(run / "checkpoints" / "epoch0000.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, value in first.items():  # last.ckpt still holds epoch 0's weights, not the poisoned ones
        assert torch.equal(last["state_dict"][name], value), name
    assert not (run / "checkpoints" / "epoch0001.ckpt").exists()


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    before = _sha(path)

    def dies_half_way(obj: object, f) -> None:  # a kill during the write, as far as the file can tell
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert _sha(path) == before and torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_periodic_checkpoints_are_bounded(ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.checkpoint.keep = 2
        ssl_cfg.trainer.max_epochs = 4
    train_ssl(ssl_cfg)
    names = sorted(p.name for p in (Path(ssl_cfg.paths.output_dir) / "checkpoints").iterdir())
    assert names == ["epoch0002.ckpt", "epoch0003.ckpt", "last.ckpt"]


def test_a_new_run_never_writes_over_another_runs_checkpoints(ssl_cfg: DictConfig) -> None:
    train_ssl(ssl_cfg)
    run = Path(ssl_cfg.paths.output_dir)
    before = {p.name: _sha(p) for p in (run / "checkpoints").iterdir()}
    with pytest.raises(CheckpointError, match="already holds checkpoints of another run.*ckpt_path=last"):
        train_ssl(ssl_cfg)
    assert {p.name: _sha(p) for p in (run / "checkpoints").iterdir()} == before


def test_concurrent_runs_get_their_own_directories(cifar_root: Path, tmp_path: Path) -> None:
    """Two runs started together with the default run directory never share it."""
    args = [
        sys.executable,
        str(REPO / "train_ssl.py"),
        *TINY_SSL,
        f"data.root={cifar_root}",
        "data.download=false",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=100",
    ]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    runs = sorted(tmp_path.glob("runs/ssl/*/*"))
    assert len(runs) == 2
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "status.json").is_file()


@pytest.fixture(scope="module")
def legacy_checkpoint(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as written before model.head.output_norm existed: trained with a plain Linear output
    (output_norm=none, the only head there was), with no output_norm in its stored config."""
    from simclr.checkpoints import CONFIG_KEY
    from tests.conftest import compose_config

    run = tmp_path_factory.mktemp("legacy_run")
    overrides = [
        f"data.root={cifar_root}",
        "data.download=false",
        "trainer.max_epochs=1",
        "model.head.output_norm=none",
    ]
    cfg = compose_config("train_ssl", TINY_SSL + overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
    train_ssl(cfg)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    del ckpt[CONFIG_KEY]["model"]["head"]["output_norm"]
    path = run / "legacy.ckpt"
    torch.save(ckpt, path)
    return path


def test_a_checkpoint_from_before_output_norm_is_refused_for_resuming_with_the_fix(
    legacy_checkpoint: Path, ssl_cfg: DictConfig
) -> None:
    legacy = legacy_checkpoint
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = str(legacy)
    with pytest.raises(CheckpointError) as err:
        train_ssl(ssl_cfg)
    message = str(err.value)
    assert "model.head.output_norm=none (it was written before that option existed)" in message
    assert message.endswith("resume it with model.head.output_norm=none")
    assert not (Path(ssl_cfg.paths.output_dir) / "checkpoints").exists()  # refused before writing anything
    # With the override it names, the old checkpoint resumes and trains on.
    with open_dict(ssl_cfg):
        ssl_cfg.model.head.output_norm = "none"
        ssl_cfg.trainer.max_epochs = 2
    metrics = train_ssl(ssl_cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss_epoch"]))


def test_resuming_into_another_head_shape_is_refused(ssl_checkpoint: Path, ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = str(ssl_checkpoint)
        ssl_cfg.model.head.hidden_dim = 48
    with pytest.raises(CheckpointError, match="model.head.hidden_dim=32, but this run builds model.head.hidden_dim=48"):
        train_ssl(ssl_cfg)


def test_a_legacy_checkpoint_still_probes(legacy_checkpoint: Path) -> None:
    """Probing reads the encoder only: checkpoints from before output_norm load unchanged."""
    from simclr.checkpoints import load_pretrained_encoder

    encoder, _ = load_pretrained_encoder(legacy_checkpoint)
    saved = torch.load(legacy_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, saved[f"encoder.{name}"]), name
