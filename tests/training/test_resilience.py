"""Runs that survive: kill and resume, divergence, atomic checkpoints, bounded checkpoints, bad input."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from simclr.errors import CheckpointError, DamagedCheckpointError, DiskFullError
from simclr.jobs.cli import run_job
from simclr.jobs.train_linear import train_linear
from simclr.jobs.train_ssl import train_ssl
from simclr.storage import human
from simclr.training.checkpoints import find_checkpoint
from simclr.training.resilience import AtomicCheckpointIO, DivergenceError
from simclr.training.resume import resolve_ckpt_path
from tests.helpers import (
    TINY_SSL,
    TinyRun,
    compose_config,
    error_lines,
    probe_config,
    run_entry_point,
    sha256,
    ssl_config,
    start_entry_point,
    tree_digest,
)


def _cli_args(cifar_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """train_ssl.py's command line for the tiny run (tests/conftest.py's ssl_run) in run_dir."""
    return [*TINY_SSL, f"data.root={cifar_root}", f"hydra.run.dir={run_dir}", *extra]


def _losses(run: Path) -> dict[int, float]:
    """train/loss_step by step; a step logged twice (replayed after a resume) keeps its last value."""
    with open(run / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_to_the_same_weights(cifar_root: Path, tmp_path: Path, ssl_run: TinyRun, sig) -> None:
    """train_ssl.py stopped by a signal in its second epoch, then resumed: the weights and the losses of the tiny
    run that was never stopped (ssl_run, the same config)."""
    run = tmp_path / "run"
    slow = "trainer.callbacks=[{_target_: tests.callbacks.SlowDown, seconds: 0.3}]"
    proc = start_entry_point("train_ssl.py", *_cli_args(cifar_root, run, slow))
    deadline = time.time() + 240
    while not (run / "checkpoints" / "epoch0000.ckpt").exists():  # one epoch done, the second under way
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM" in stderr and "ckpt_path=last" in stderr
    killed_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert killed_at["epoch"] == 0  # the last complete epoch, intact

    train_ssl(ssl_config(cifar_root, run, ["ckpt_path=last"]))  # the job the script runs, in this process
    ref, got = _weights(ssl_run.dir), _weights(run)
    for name, value in ref.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)
    ref_losses, got_losses = _losses(ssl_run.dir), _losses(run)
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
    """What train_linear.py ckpt=, python -m simclr.jobs.export ckpt= and ckpt_path=<dir> all resolve with."""
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


@pytest.mark.parametrize("check_every", [1, 1000])
def test_divergence_stops_without_overwriting_the_last_good_checkpoint(ssl_cfg: DictConfig, check_every: int) -> None:
    """Poison a weight in epoch 1; with check_every=1000 the loss check never fires, the save guard does."""
    run = Path(ssl_cfg.paths.output_dir)
    with open_dict(ssl_cfg):
        ssl_cfg.divergence.check_every_n_steps = check_every
        ssl_cfg.trainer.callbacks = [{"_target_": "tests.callbacks.PoisonWeights", "step": 8}]  # 6 steps per epoch
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
    before = sha256(path)

    def dies_half_way(obj: object, f) -> None:  # a kill during the write, as far as the file can tell
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert sha256(path) == before and torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_periodic_checkpoints_are_bounded(ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.checkpoint.keep = 2
        ssl_cfg.trainer.max_epochs = 3
    train_ssl(ssl_cfg)
    names = sorted(p.name for p in (Path(ssl_cfg.paths.output_dir) / "checkpoints").iterdir())
    assert names == ["epoch0001.ckpt", "epoch0002.ckpt", "last.ckpt"]


def test_a_new_run_never_writes_over_another_runs_checkpoints(ssl_run: TinyRun, ssl_cfg: DictConfig) -> None:
    run = _copy_run(ssl_run.dir, Path(ssl_cfg.paths.output_dir))
    before = {p.name: sha256(p) for p in (run / "checkpoints").iterdir()}
    with pytest.raises(CheckpointError, match="already holds checkpoints of another run.*ckpt_path=last"):
        train_ssl(ssl_cfg)
    assert {p.name: sha256(p) for p in (run / "checkpoints").iterdir()} == before


@pytest.fixture(scope="module")
def legacy_checkpoint(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as written before model.head.output_norm existed: trained with a plain Linear output
    (output_norm=none, the only head there was), with no output_norm in its stored config."""
    from simclr.training.checkpoints import CONFIG_KEY

    run = tmp_path_factory.mktemp("legacy_run")
    train_ssl(ssl_config(cifar_root, run, ["trainer.max_epochs=1", "model.head.output_norm=none"]))
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
    from simclr.training.checkpoints import load_pretrained_encoder

    encoder, _ = load_pretrained_encoder(legacy_checkpoint)
    saved = torch.load(legacy_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, saved[f"encoder.{name}"]), name


# ---- a full disk ---------------------------------------------------------------------------------------


def test_a_checkpoint_write_syncs_the_directory_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        calls.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        fsync(fd)

    def spy_replace(src: str, dst: str) -> None:
        calls.append(("replace", Path(dst).name))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    AtomicCheckpointIO().save_checkpoint({"step": 1}, tmp_path / "last.ckpt")
    assert calls == [("fsync", "file"), ("replace", "last.ckpt"), ("fsync", "dir")]


def _no_space(obj: object, f) -> None:
    """torch.save on a full disk: part of the archive is written, then ENOSPC."""
    f.write(b"PK\x03\x04 partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_space_inside_torch(obj: object, f) -> None:
    """As torch.save reports it: its archive writer raises a RuntimeError while the ENOSPC is handled."""
    try:
        _no_space(obj, f)
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def _no_errno(obj: object, f) -> None:
    f.write(b"PK\x03\x04 partial")
    raise RuntimeError("unexpected pos")


@pytest.mark.parametrize("fails", [_no_space, _no_space_inside_torch, _no_errno])
def test_a_full_disk_at_a_checkpoint_write_is_named_and_costs_nothing(
    ssl_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails
) -> None:
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True)
    shutil.copy2(ssl_checkpoint, ckpts / "last.ckpt")
    before = sha256(ckpts / "last.ckpt")
    monkeypatch.setattr(torch, "save", fails)
    monkeypatch.setattr("simclr.training.resilience.free_bytes", lambda folder: 12345)  # what the message reports
    if fails is _no_errno:  # no errno in the chain: the free space decides
        monkeypatch.setattr("simclr.storage.free_bytes", lambda folder: 10**9)
        with pytest.raises(RuntimeError, match="^unexpected pos$"):  # not a full disk: the error as it was
            AtomicCheckpointIO().save_checkpoint({"simclr_kind": "pretrain"}, ckpts / "epoch0001.ckpt")
        monkeypatch.setattr("simclr.storage.free_bytes", lambda folder: 0)
    with pytest.raises(DiskFullError) as full:
        AtomicCheckpointIO().save_checkpoint({"simclr_kind": "pretrain"}, ckpts / "epoch0001.ckpt")
    monkeypatch.undo()
    size = human((ckpts / "last.ckpt").stat().st_size)
    assert str(full.value) == (
        f"cannot write {ckpts / 'epoch0001.ckpt'}: no space left on the device (12.1 KiB free in {ckpts}); "
        f"the newest intact checkpoint is {ckpts / 'last.ckpt'} (end of epoch 1, {size}): free space there, or keep "
        f"fewer checkpoints (checkpoint.keep=N, a larger checkpoint.every_n_epochs), then resume with "
        f"ckpt_path=last hydra.run.dir={run}"
    )
    assert full.value.path == ckpts / "epoch0001.ckpt" and full.value.free == 12345
    assert [p.name for p in ckpts.iterdir()] == ["last.ckpt"]  # no partial or temporary file
    assert sha256(ckpts / "last.ckpt") == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 6 MiB tmpfs at tmp_path/disk where this process may mount one (root, in a sandbox that allows it);
    None elsewhere, and the test simulates the full disk instead."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        yield None
        return
    if subprocess.run([mount, "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], capture_output=True).returncode:
        yield None
        return
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


FULL_DISK = re.compile(
    r"error: cannot write (?P<path>\S+): no space left on the device \((?P<free>[\d.]+ (?:B|KiB|MiB|GiB)) free in "
    r"(?P<folder>\S+)\); the newest intact checkpoint is (?P<newest>\S+) \(end of epoch (?P<epoch>\d+), [\d.]+ "
    r"(?:KiB|MiB)\): free space there, or keep fewer checkpoints \(checkpoint\.keep=N, a larger "
    r"checkpoint\.every_n_epochs\), then resume with (?P<resume>ckpt_path=\S+ hydra\.run\.dir=\S+)"
)


def _fail_at_the_third_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """epoch0000.ckpt and last.ckpt of epoch 0 are written; epoch0001.ckpt meets a full disk."""
    save, calls = torch.save, []

    def save_until_full(obj: object, f) -> None:
        calls.append(f)
        if len(calls) == 3:
            _no_space_inside_torch(obj, f)
        save(obj, f)

    monkeypatch.setattr(torch, "save", save_until_full)


def test_a_full_disk_ends_the_run_with_one_line_and_every_checkpoint_loads(
    small_disk: Path | None, ssl_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """On a real 6 MiB file system where one can be mounted (the run stops where the space runs out), else
    with ENOSPC simulated at the third checkpoint write; then the resume command the message gives works.
    The job runs as the script runs it (run_job: one line, exit status 2), in this process."""
    epochs = 4
    run = Path(ssl_cfg.paths.output_dir) if small_disk is None else small_disk / "run"
    with open_dict(ssl_cfg):
        ssl_cfg.paths.output_dir = str(run)
        ssl_cfg.trainer.max_epochs = epochs
    if small_disk is not None:  # room for three checkpoints of the tiny run (about 340 KiB each), not four
        (small_disk / "ballast").write_bytes(bytes(shutil.disk_usage(small_disk).free - 1200 * 1024))
    else:
        _fail_at_the_third_checkpoint(monkeypatch)
    with pytest.raises(SystemExit) as stopped:
        run_job(lambda: train_ssl(ssl_cfg), ssl_cfg)
    monkeypatch.undo()
    stderr = capsys.readouterr().err
    assert stopped.value.code == 2, stderr[-3000:]
    errors = error_lines(stderr)
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    said = FULL_DISK.fullmatch(errors[0])
    assert said, errors[0]
    failed, newest = Path(said["path"]), Path(said["newest"])
    assert failed.parent == run / "checkpoints" == Path(said["folder"])
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]  # no temporary file left
    epochs_saved = {p: torch.load(p, weights_only=True)["epoch"] for p in (run / "checkpoints").glob("*.ckpt")}
    assert epochs_saved[newest] == int(said["epoch"]) == max(epochs_saved.values())  # and every one loads
    last = run / "checkpoints" / "last.ckpt"
    assert said["resume"] == (
        f"ckpt_path=last hydra.run.dir={run}" if newest == last else f"ckpt_path={newest} hydra.run.dir={run}"
    )
    with open(run / "metrics.csv", newline="") as f:  # no row cut short
        rows = list(csv.reader(f))
    assert len({len(r) for r in rows}) == 1
    assert json.loads((run / "status.json").read_text())["error"] == errors[0].removeprefix("error: ")

    if small_disk is not None:  # space freed, the command the message gives finishes the run
        (small_disk / "ballast").unlink()
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = said["resume"].split()[0].removeprefix("ckpt_path=")
    train_ssl(ssl_cfg)
    assert torch.load(last, weights_only=True)["epoch"] == epochs - 1


# ---- damaged checkpoints -------------------------------------------------------------------------------


def _copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)  # copy2: the modification times, which order the checkpoints, come along
    return to


DAMAGE = {
    "truncated": (
        lambda p: os.truncate(p, 1000),
        lambda size: "it is truncated (a PyTorch archive cut off at 1000 B: an interrupted write or copy)",
    ),
    "zeroed": (
        lambda p: p.write_bytes(bytes(p.stat().st_size)),
        lambda size: (
            f"its {human(size)} are all zero bytes (the data never reached the disk, e.g. a crash or power loss)"
        ),
    ),
    "empty": (lambda p: os.truncate(p, 0), lambda size: "it is empty (0 bytes; the write never reached the disk)"),
    "not a checkpoint": (
        lambda p: p.write_text("my notes"),
        lambda size: "its bytes are not a PyTorch archive (text, or another program's format)",
    ),
}


def _damage(path: Path, how: str) -> str:
    """Damages `path` as `how` says and returns the words the error uses for it."""
    size = path.stat().st_size
    DAMAGE[how][0](path)
    return DAMAGE[how][1](size)


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_checkpoint_is_named_with_the_newest_intact_one(
    ssl_run: TinyRun, cifar_root: Path, tmp_path: Path, how: str
) -> None:
    """train_linear.py ckpt=<run dir> on a run whose last.ckpt is damaged."""
    run = _copy_run(ssl_run.dir, tmp_path / "run")
    last, intact = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "epoch0001.ckpt"
    damage = _damage(last, how)
    before = tree_digest(run)
    with pytest.raises(DamagedCheckpointError) as refused:
        train_linear(probe_config(cifar_root, tmp_path / "probe", [f"ckpt={run}"]))
    assert str(refused.value) == (
        f"{last} is not a readable PyTorch checkpoint: {damage}; the newest intact checkpoint beside it is {intact} "
        f"(end of epoch 1): pass ckpt={intact}"
    )
    assert tree_digest(run) == before and not (tmp_path / "probe" / "results.json").exists()


def test_ckpt_path_last_or_a_file_refuses_a_damaged_checkpoint(ssl_run: TinyRun, ssl_cfg: DictConfig) -> None:
    run = _copy_run(ssl_run.dir, Path(ssl_cfg.paths.output_dir))
    ckpts = run / "checkpoints"
    damage = _damage(ckpts / "last.ckpt", "truncated")
    before = tree_digest(run)
    said = (
        f"{ckpts / 'last.ckpt'} is not a readable PyTorch checkpoint: {damage}; the newest intact checkpoint beside "
        f"it is {ckpts / 'epoch0001.ckpt'} (end of epoch 1): pass ckpt_path={ckpts / 'epoch0001.ckpt'}"
    )
    for value, more in [
        ("last", ", or rerun with ckpt_path=auto, which resumes from it and keeps last.ckpt under a new name"),
        (str(ckpts / "last.ckpt"), ""),
    ]:
        with open_dict(ssl_cfg):
            ssl_cfg.ckpt_path = value
        with pytest.raises(DamagedCheckpointError) as refused:
            train_ssl(ssl_cfg)
        assert str(refused.value) == said + more
        assert tree_digest(run) == before  # nothing renamed, nothing written


@pytest.mark.parametrize("value", ["auto", "last"])
def test_a_damaged_checkpoint_with_nothing_intact_beside_it_stops_the_run(ssl_cfg: DictConfig, value: str) -> None:
    last = Path(ssl_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(bytes(1000))
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = value
    with pytest.raises(DamagedCheckpointError) as refused:
        train_ssl(ssl_cfg)
    assert str(refused.value) == (
        f"{last} is not a readable PyTorch checkpoint: its 1000 B are all zero bytes (the data never reached the "
        f"disk, e.g. a crash or power loss); no intact checkpoint is beside it; pass a .ckpt file written by "
        f"train_ssl.py, or rename it and rerun to start this run afresh"
    )
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"] and last.read_bytes() == bytes(1000)


def test_ckpt_path_auto_resumes_from_the_newest_intact_checkpoint_and_keeps_the_damaged_ones(
    ssl_run: TinyRun, ssl_cfg: DictConfig, caplog: pytest.LogCaptureFixture
) -> None:
    run = _copy_run(ssl_run.dir, Path(ssl_cfg.paths.output_dir))
    ckpts = run / "checkpoints"
    damage = _damage(ckpts / "last.ckpt", "truncated")
    _damage(ckpts / "epoch0001.ckpt", "zeroed")
    damaged = {name: sha256(ckpts / name) for name in ("last.ckpt", "epoch0001.ckpt")}
    with open_dict(ssl_cfg):
        ssl_cfg.ckpt_path = "auto"
        ssl_cfg.trainer.max_epochs = 3
    with caplog.at_level("WARNING", logger="simclr"):
        train_ssl(ssl_cfg)
    kept = {p.name.split(".damaged-")[0]: p for p in ckpts.iterdir() if ".damaged-" in p.name}
    assert {name: sha256(p) for name, p in kept.items()} == damaged  # kept byte for byte, under new names
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ckpt_path=auto")]
    assert notes == [
        f"ckpt_path=auto: {ckpts / 'last.ckpt'} cannot be read: {damage}; resuming from {ckpts / 'epoch0000.ckpt'} "
        f"(end of epoch 0) instead: epoch 1 is trained again; the damaged files are kept as {kept['last.ckpt']}, "
        f"{kept['epoch0001.ckpt']}"
    ]
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == [
        "epoch0000.ckpt",
        "epoch0001.ckpt",
        "epoch0002.ckpt",
        "last.ckpt",
    ]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 2


def test_a_damaged_checkpoint_is_reported_once(ssl_run: TinyRun, cifar_root: Path, tmp_path: Path) -> None:
    """The script prints the error line alone; the log file records it; torch's own words appear nowhere."""
    run = _copy_run(ssl_run.dir, tmp_path / "run")
    _damage(run / "checkpoints" / "last.ckpt", "truncated")
    done = run_entry_point("train_ssl.py", *_cli_args(cifar_root, run, "ckpt_path=last"))
    assert done.returncode == 2
    output = done.stdout + done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and errors[0].startswith(f"error: {run / 'checkpoints' / 'last.ckpt'} is not a readable")
    assert output.count("is not a readable PyTorch checkpoint") == 1 and "zip archive" not in output
    assert (run / "train_ssl.log").read_text().count(errors[0].removeprefix("error: ")) == 1


def test_a_full_disk_while_logging_keeps_metrics_csv_whole_and_names_it(
    ssl_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any write of the job, not only checkpoints: here the CSV logger's, reported by run_job's `user_error`."""
    from simclr.training.csv_logger import AppendingCSVLogger
    from simclr.training.resilience import user_error

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy2(ssl_checkpoint, run / "checkpoints" / "last.ckpt")
    logger = AppendingCSVLogger(save_dir=str(run), name="", version="")
    logger.log_metrics({"train/loss": 4.0}, step=0)
    logger.save()
    before = (run / "metrics.csv").read_bytes()

    writerows, calls = csv.DictWriter.writerows, []

    def half_a_row(self: csv.DictWriter, rows: list[dict]) -> None:
        calls.append(rows)
        if len(calls) == 1:  # the header rewrite (whole, in memory)
            return writerows(self, rows)
        self.writer.writerow(["1", "3.9"])  # the append: the start of a row, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    logger.log_metrics({"train/loss": 3.9, "val/knn_top1": 0.2}, step=1)  # a new column: the header is rewritten
    monkeypatch.setattr(csv.DictWriter, "writerows", half_a_row)
    with pytest.raises(OSError) as full:
        logger.save()
    monkeypatch.undo()
    assert before == b"step,train/loss\r\n0,4.0\r\n"
    assert (run / "metrics.csv").read_bytes() == b"step,train/loss,val/knn_top1\r\n0,4.0,\r\n"  # widened, no half row
    cfg = compose_config("train_ssl", [f"paths.output_dir={run}"])
    monkeypatch.setattr("simclr.training.resilience.free_bytes", lambda folder: 0)
    said = str(user_error(full.value, cfg))
    assert said.startswith(f"cannot write {run / 'metrics.csv'}: no space left on the device (0 B free in {run}); ")
    assert f"the newest intact checkpoint is {run / 'checkpoints' / 'last.ckpt'} (end of epoch 1, " in said
    logger.save()  # space again: the rows kept in memory are written
    with open(run / "metrics.csv", newline="") as f:
        assert [r["train/loss"] for r in csv.DictReader(f)] == ["4.0", "3.9"]
