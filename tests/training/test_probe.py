"""The linear probe: frozen encoder, both modes, results, and checkpoints it must refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from simclr.data.datamodule import CIFAR10DataModule
from simclr.errors import CheckpointError, ConfigError
from simclr.evaluation.features import extract_features
from simclr.jobs.train_linear import probe_encoder, train_linear
from simclr.models.nets import CifarResNet
from simclr.training.checkpoints import CONFIG_KEY, load_pretrained_encoder
from simclr.training.probe import LinearProbe
from tests.callbacks import RecordProbeBatches
from tests.helpers import compose_config, probe_config

WELL_ABOVE_CHANCE = 0.3  # classes of distinct mean colours: 10% is chance; 0.36 to 0.66 measured here


def _recording(cfg):  # noqa: ANN001, ANN202
    with open_dict(cfg):
        cfg.trainer.callbacks = [{"_target_": "tests.callbacks.RecordProbeBatches"}]
    return cfg


def _plain_trainer(tmp_path: Path, max_epochs: int) -> pl.Trainer:
    """A bare CPU Trainer: no logger, checkpoints, progress bar or summary."""
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


@pytest.mark.parametrize("mode", ["cached", "augmented"])
def test_encoder_stays_frozen(cifar_root: Path, mode: str, tmp_path: Path) -> None:
    """Weights and BatchNorm running statistics are bit-identical after probe training."""
    encoder = CifarResNet("resnet_tiny", width=4)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    probe = LinearProbe(encoder, mode=mode, lr=1e-2)
    linear_before = probe.classifier[1].weight.detach().clone()
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, eval_batch_size=64, val_size=50, purpose="probe")
    trainer = _plain_trainer(tmp_path, max_epochs=2)
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
    assert saved["val_top1"] > WELL_ABOVE_CHANCE and saved["test_top1"] > WELL_ABOVE_CHANCE
    assert saved["encoder"] == "pretrained" and saved["model"]["arch"] == "resnet_tiny"
    assert saved["ckpt"] == str(ssl_checkpoint.resolve()) and saved["mode"] == "cached"
    assert saved["protocol"] == "cached_adam" and saved["probe"]["optimizer"] == "adam"
    assert saved["selection"] == "val" and saved["split"]["val_per_class"] == [5] * 10
    # The same seed and data.val_size hold out the same images in train_ssl.py and train_linear.py.
    pretrain_split = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)[CONFIG_KEY]["split"]
    assert saved["split"] == pretrain_split and saved["same_split_as_pretraining"] is True
    assert "linear probe: test top-1" in capsys.readouterr().out
    assert (tmp_path / "figures" / "probe_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # The classifier acts on 32-d backbone features of the width-4 encoder, not on the head's output.
    encoder, _ = load_pretrained_encoder(ssl_checkpoint)
    assert encoder.feature_dim == 32
    # The probe's own checkpoint is no encoder to probe: refused before anything is written.
    again = tmp_path / "again"
    with pytest.raises(CheckpointError, match="is a probe checkpoint, but a pretrain checkpoint is needed"):
        train_linear(probe_config(cifar_root, again, [f"ckpt={tmp_path / 'checkpoints' / 'probe.ckpt'}"]))
    assert not again.exists()


def test_encoder_rebuilt_with_checkpoint_weights(ssl_checkpoint: Path) -> None:
    encoder, config = load_pretrained_encoder(ssl_checkpoint)
    state = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(encoder.conv1.weight, state["encoder.conv1.weight"])
    assert config["model"]["width"] == 4


def test_ckpt_may_be_the_run_directory(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    """`ckpt=<run dir>` probes its checkpoints/last.ckpt, and the results name that file."""
    encoder, source = probe_encoder(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint.parents[1]}"]))
    assert source["ckpt"] == str(ssl_checkpoint.resolve())
    reference, _ = load_pretrained_encoder(ssl_checkpoint)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in encoder.state_dict().items())


def test_random_encoder_baseline(cifar_root: Path, tmp_path: Path) -> None:
    results = train_linear(probe_config(cifar_root, tmp_path, ["model=resnet_tiny", "model.width=4"]))
    assert results["encoder"] == "random" and results["ckpt"] is None
    assert (tmp_path / "results.json").is_file()


def test_probe_trains_on_the_training_split_minus_validation(
    cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path
) -> None:
    cfg = _recording(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "trainer.max_epochs=3"]))
    results = train_linear(cfg)
    record = RecordProbeBatches.last
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, val_size=50, seed=cfg.seed)
    dm.setup()
    val, rest = set(dm.split.val.tolist()), set(dm.split.train.tolist())
    seen = torch.cat([idx for _, idx in record.train])
    assert len(seen) == 3 * (150 // 32) * 32 and set(seen.tolist()) <= rest and not set(seen.tolist()) & val
    assert len(set(seen.tolist())) > 140  # three shuffled epochs reach (nearly) every image of the rest
    # Validated every epoch and once more at the end, on exactly the held-out images.
    validated = torch.cat(record.val)
    assert len(validated) == 4 * 50 and set(validated.tolist()) == val
    # Cached features line up with their indices: a batch's features are the encoder's for those images.
    encoder, _ = load_pretrained_encoder(ssl_checkpoint)
    feats, idx = record.train[0]
    expected = extract_features(encoder, dm.train_set.images[idx], normalize=LinearProbe(encoder).augment.normalize)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    assert results["val_top1"] > WELL_ABOVE_CHANCE


def test_cache_holds_each_image_at_its_index(cifar_root: Path, tmp_path: Path) -> None:
    encoder = CifarResNet("resnet_tiny", width=4)
    probe = LinearProbe(encoder, mode="cached")
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32, eval_batch_size=64, val_size=50, purpose="probe")
    trainer = _plain_trainer(tmp_path, max_epochs=1)
    trainer.fit(probe, datamodule=dm)
    trainer.test(probe, datamodule=dm, verbose=False)
    for split, dataset in (("train", dm.train_set), ("test", dm.test_set)):
        cache = probe._cache[split]
        assert cache.shape == (len(dataset), encoder.feature_dim)
        for i in (0, 7, len(dataset) - 1, *dm.split.val[:3].tolist()):
            with torch.no_grad():
                alone = encoder.eval()(probe.augment.normalize(dataset.images[i : i + 1]))
            torch.testing.assert_close(cache[i], alone[0], rtol=1e-4, atol=1e-5, msg=f"{split} image {i}")


def test_flip_average_caches_the_mean_of_both_orientations(
    cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path
) -> None:
    cfg = _recording(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "probe.flip_average=true"]))
    results = train_linear(cfg)
    assert results["probe"]["flip_average"] is True and results["val_top1"] > WELL_ABOVE_CHANCE
    encoder, _ = load_pretrained_encoder(ssl_checkpoint)
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32)
    dm.setup()
    feats, idx = RecordProbeBatches.last.train[0]
    images, normalize = dm.train_set.images[idx], LinearProbe(encoder).augment.normalize
    both = (
        extract_features(encoder, images, normalize=normalize)
        + extract_features(encoder, images.flip(-1), normalize=normalize)
    ) / 2
    torch.testing.assert_close(feats, both, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(feats, extract_features(encoder, images, normalize=normalize), atol=1e-3)


def test_augmented_mode_runs(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    cfg = _recording(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "probe.mode=augmented"]))
    results = train_linear(cfg)
    assert results["mode"] == "augmented" and results["test_top1"] > WELL_ABOVE_CHANCE
    # Training features come from cropped and flipped images, not from the images themselves.
    encoder, _ = load_pretrained_encoder(ssl_checkpoint)
    dm = CIFAR10DataModule(str(cifar_root), batch_size=32)
    dm.setup()
    feats, idx = RecordProbeBatches.last.train[0]
    plain = extract_features(encoder, dm.train_set.images[idx], normalize=LinearProbe(encoder).augment.normalize)
    assert not torch.allclose(feats, plain, atol=1e-3)


def test_public_libraries_protocol(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    """probe=sgd_crop_flip: SGD momentum 0.9, lr 0.1, no weight decay, cosine, crop + flip, no feature BN."""
    preset = compose_config("train_linear", ["probe=sgd_crop_flip"])
    assert preset.trainer.max_epochs == 100 and preset.probe.batch_size == 256 and preset.probe.lr == 0.1
    # The tiny dataset: batches of 32, 2 epochs; everything else as the preset has it.
    cfg = probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "probe=sgd_crop_flip", "probe.batch_size=32"])
    with open_dict(cfg):
        cfg.probe.lr = preset.probe.lr
    with open_dict(cfg):
        cfg.trainer.max_epochs = 2
    results = train_linear(cfg)
    assert results["protocol"] == "sgd_crop_flip" and results["mode"] == "augmented"
    assert results["eval_batch_size"] == 64  # data.eval_batch_size as given (null: chosen for the device)
    assert results["probe"]["optimizer"] == "sgd" and results["probe"]["crop_scale"] == [0.08, 1.0]
    assert results["val_top1"] is not None  # lr 0.1 and 8 steps leave the tiny probe near chance: no bound
    ckpt = torch.load(tmp_path / "checkpoints" / "probe.ckpt", map_location="cpu", weights_only=False)
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    assert group["momentum"] == 0.9 and group["weight_decay"] == 0.0 and group["nesterov"] is False
    assert group["initial_lr"] == 0.1 and "momentum_buffer" in next(iter(ckpt["optimizer_states"][0]["state"].values()))
    schedule = ckpt["lr_schedulers"][0]
    assert schedule["T_max"] == 2 * (150 // 32) and schedule["eta_min"] == 0  # cosine to 0 over the run, per step
    hp = ckpt["hyper_parameters"]
    assert hp["mode"] == "augmented" and hp["batch_norm"] is False
    probe = LinearProbe(CifarResNet("resnet_tiny", width=4), **{k: hp[k] for k in hp})
    assert isinstance(probe.classifier[0], torch.nn.Identity)
    assert probe.augment.crop_scale == (0.08, 1.0) and probe.augment.flip_p == 0.5
    assert probe.augment.jitter_p == 0 and probe.augment.grayscale_p == 0  # crop and flip only


def test_without_validation_split(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    results = train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "data.val_size=0"]))
    assert results["val_top1"] is None and results["selection"] == "test"
    assert results["same_split_as_pretraining"] is False  # pretraining held 50 images out


def test_ckpt_and_model_are_exclusive(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "model=resnet18"]))
    with pytest.raises(ConfigError, match="nothing to probe"):
        train_linear(probe_config(cifar_root, tmp_path, []))


def test_the_probe_module_guards_its_own_api() -> None:
    """The config refuses these while Hydra composes (tests/config/test_schema.py); direct callers get the same."""
    encoder = CifarResNet("resnet_tiny", width=4)
    with pytest.raises(ConfigError, match="probe.optimizer='rmsprop' is not known; choose one of \\['adam', 'sgd'\\]"):
        LinearProbe(encoder, optimizer="rmsprop")
    with pytest.raises(
        ConfigError, match="probe.mode='finetune' is not known; choose one of \\['cached', 'augmented'\\]"
    ):
        LinearProbe(encoder, mode="finetune")
