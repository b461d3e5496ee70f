"""trainer.precision=auto: bf16 where the hardware computes it natively, float32 elsewhere, recorded with
the reason; an explicit value is kept; under bf16 the loss, kNN similarities and the probe's layer stay
float32."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from simclr.jobs.train_linear import train_linear
from simclr.jobs.train_ssl import train_ssl
from simclr.models.nets import CifarResNet
from simclr.training.precision import choose_precision
from simclr.training.probe import LinearProbe
from tests.helpers import compose_config, probe_config, ssl_config


@pytest.mark.parametrize(
    "avx512_bf16, amx, chosen, why",
    [
        (True, False, "bf16-mixed", "trainer.precision=auto: the CPU has AVX512-BF16"),
        (True, True, "bf16-mixed", "trainer.precision=auto: the CPU has AVX512-BF16 and AMX"),
        (False, False, "32-true", "trainer.precision=auto: the CPU has no AVX512-BF16 or AMX"),
    ],
)
def test_auto_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, chosen: str, why: str
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = compose_config("train_ssl", ["trainer=cpu"]).trainer
    assert cpu.precision == "auto"  # the CPU preset, and so the quick start, asks for the choice
    assert choose_precision(cpu) == (chosen, why)
    explicit = compose_config("train_ssl", ["trainer=cpu", "trainer.precision=32-true"]).trainer
    assert choose_precision(explicit) == ("32-true", "trainer.precision as given")


def test_a_bf16_run_records_its_precision_and_keeps_the_loss_and_the_probe_layer_float32(
    cifar_root: Path, tmp_path: Path
) -> None:
    cfg = ssl_config(cifar_root, tmp_path, ["trainer.max_epochs=1", "trainer.precision=bf16-mixed"])
    with open_dict(cfg):
        cfg.trainer.callbacks = [{"_target_": "tests.callbacks.RecordBatches", "out_dir": str(tmp_path / "record")}]
    train_ssl(cfg)
    steps = torch.load(tmp_path / "record" / "rank0_epoch0.pt", weights_only=True)
    assert steps["loss_dtypes"] == ["torch.float32"]  # the callback also failed on any non-finite loss
    record = {"precision": "bf16-mixed", "precision_reason": "trainer.precision as given"}
    results = json.loads((tmp_path / "results.json").read_text())
    assert {k: results[k] for k in record} == record
    assert results["test_knn_top1"] > 0.3  # the tiny dataset's classes differ in colour: chance is 0.1
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["simclr_precision"] == record
    probe = probe_config(cifar_root, tmp_path / "probe", [f"ckpt={ckpt}", "trainer.precision=bf16-mixed"])
    probed = train_linear(probe)
    assert (probed["precision"], probed["test_top1"] > 0.3) == ("bf16-mixed", True)


def test_the_probe_layer_computes_in_float32_under_autocast() -> None:
    encoder = CifarResNet("resnet_tiny", width=4)
    probe = LinearProbe(encoder).eval()
    feats = torch.randn(8, encoder.feature_dim, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = probe.logits(feats)
        plain = probe.classifier(feats.float())
    assert logits.dtype == torch.float32 and plain.dtype == torch.bfloat16  # autocast would have used bf16
    assert torch.equal(logits, probe.classifier(feats.float()))


def test_the_quick_start_asks_for_auto() -> None:
    cfg = compose_config("train_ssl", ["experiment=quickstart"])
    assert OmegaConf.select(cfg, "trainer.precision") == "auto"
