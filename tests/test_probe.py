"""The linear probe: frozen encoder, both modes, results, and checkpoints it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from simclr.checkpoints import load_pretrained_encoder
from simclr.data import CIFAR10DataModule
from simclr.errors import CheckpointError, ConfigError
from simclr.evaluate import train_linear
from simclr.nets import CifarResNet
from simclr.probe import LinearProbe
from tests.conftest import probe_config


@pytest.mark.parametrize("mode", ["cached", "augmented"])
def test_encoder_stays_frozen(cifar_root: Path, mode: str, tmp_path: Path) -> None:
    """Weights and BatchNorm running statistics are bit-identical after probe training."""
    encoder = CifarResNet("resnet_tiny", width=4)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    probe = LinearProbe(encoder, mode=mode, lr=1e-2)
    linear_before = probe.classifier[1].weight.detach().clone()
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, eval_batch_size=64)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    after = encoder.state_dict()
    for name, value in before.items():
        assert torch.equal(value, after[name]), f"encoder {name} changed during probe training"
    assert not encoder.training and all(not p.requires_grad for p in encoder.parameters())
    assert not torch.equal(linear_before, probe.classifier[1].weight)  # the linear layer did train


def test_probe_of_checkpoint_writes_results(
    cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    results = train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}"]))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    assert 0.0 <= saved["test_top1"] <= 1.0
    assert saved["encoder"] == "pretrained" and saved["model"]["arch"] == "resnet_tiny"
    assert saved["ckpt"] == str(ssl_checkpoint.resolve()) and saved["mode"] == "cached"
    assert "linear probe: test top-1" in capsys.readouterr().out
    assert (tmp_path / "figures" / "probe_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # The classifier acts on 32-d backbone features of the width-4 encoder, not on the head's output.
    encoder, _ = load_pretrained_encoder(ssl_checkpoint)
    assert encoder.feature_dim == 32


def test_encoder_rebuilt_with_checkpoint_weights(ssl_checkpoint: Path) -> None:
    encoder, config = load_pretrained_encoder(ssl_checkpoint)
    state = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(encoder.conv1.weight, state["encoder.conv1.weight"])
    assert config["model"]["width"] == 4


def test_random_encoder_baseline(cifar_root: Path, tmp_path: Path) -> None:
    results = train_linear(probe_config(cifar_root, tmp_path, ["model=resnet_tiny", "model.width=4"]))
    assert results["encoder"] == "random" and results["ckpt"] is None
    assert (tmp_path / "results.json").is_file()


def test_augmented_mode_runs(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    results = train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "probe.mode=augmented"]))
    assert results["mode"] == "augmented" and 0.0 <= results["test_top1"] <= 1.0


def _expect_refusal(cifar_root: Path, tmp_path: Path, ckpt: Path, error: type, message: str) -> None:
    out = tmp_path / "probe_out"
    with pytest.raises(error, match=message):
        train_linear(probe_config(cifar_root, out, [f"ckpt={ckpt}"]))
    assert not (out / "results.json").exists()


def test_missing_checkpoint(cifar_root: Path, tmp_path: Path) -> None:
    _expect_refusal(cifar_root, tmp_path, tmp_path / "nope.ckpt", CheckpointError, "nope.ckpt does not exist")


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", bytes(range(256)) * 10])
def test_file_that_is_not_a_checkpoint(cifar_root: Path, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bogus.ckpt"
    path.write_bytes(content)
    _expect_refusal(cifar_root, tmp_path, path, CheckpointError, "not a readable PyTorch checkpoint")
    assert path.read_bytes() == content


def test_torch_file_of_something_else(cifar_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    _expect_refusal(cifar_root, tmp_path, path, CheckpointError, "not a checkpoint of this project")


def test_probe_checkpoint_is_refused(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    train_linear(probe_config(cifar_root, tmp_path / "first", [f"ckpt={ssl_checkpoint}", "trainer.max_epochs=1"]))
    probe_ckpt = tmp_path / "first" / "checkpoints" / "probe.ckpt"
    _expect_refusal(cifar_root, tmp_path, probe_ckpt, CheckpointError, "is a probe checkpoint, but a pretrain")


def test_checkpoint_whose_weights_do_not_match_its_config(ssl_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    ckpt["simclr_config"]["model"]["width"] = 8
    path = tmp_path / "edited.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        load_pretrained_encoder(path)


def test_ckpt_and_model_are_exclusive(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "model=resnet18"]))
    with pytest.raises(ConfigError, match="nothing to probe"):
        train_linear(probe_config(cifar_root, tmp_path, []))


def test_unknown_mode(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="probe.mode='finetune' is not known"):
        train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "probe.mode=finetune"]))
