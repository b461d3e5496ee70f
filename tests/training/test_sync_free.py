"""The training step never makes the host wait for the device (outside log steps), through the real Trainer.

On a GPU every host read of a device value (`.item()`, `nonzero`, a tensor built from Python data)
stalls the CPU until the queued kernels finish. `DispatchRecorder` sees those ops on the CPU too, so
this test runs `train_ssl` as a user does (progress bar, CSV logging, divergence guard, checkpoints)
and checks every step but the log steps, where the loggers read the loss by design.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import open_dict

from simclr.jobs.train_ssl import train_ssl
from tests.callbacks import RecordSyncs
from tests.helpers import TINY_MODEL, compose_config, write_cifar10

# The default config but a tiny encoder: progress bar, logging every 20 steps and the divergence
# guard on, as a user runs it; 25 steps in the epoch, so one log step falls inside the window
# (steps 2-25 of the first epoch).
TINY_DEFAULTS = [
    *TINY_MODEL,
    "trainer=cpu",
    "data.download=false",
    "data.batch_size=8",
    "data.val_size=50",
    "knn.k=20",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=2",  # the epoch, recorded, ends without the kNN pass
]
# Where host reads may happen on a log step: the loggers' conversion of the logged tensors, the
# progress bar's copy of the same loss, the divergence guard's flag, and the learning rate (a Python
# float) entering the logs as a tensor, with its accumulators the first time it is logged.
ALLOWED_ON_LOG_STEPS = (
    "lightning_fabric/utilities/apply_func.py",
    "simclr/training/progress.py",
    "simclr/training/resilience.py",
    "pytorch_lightning/core/module.py",
    "pytorch_lightning/trainer/connectors/logger_connector/result.py",
)
MAX_SYNCS_PER_LOG_STEP = 8


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "lars"])
def test_training_steps_make_no_host_device_synchronisation(tmp_path: Path, optimizer: str) -> None:
    root = tmp_path / "data"
    write_cifar10(root, per_batch=40)  # 200 images: 25 steps of 8
    cfg = compose_config("train_ssl", [*TINY_DEFAULTS, f"optimizer={optimizer}", f"data.root={root}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.trainer.callbacks = [{"_target_": "tests.callbacks.RecordSyncs"}]
    assert cfg.trainer.enable_progress_bar and cfg.trainer.log_every_n_steps == 20
    assert cfg.divergence.check_every_n_steps == 20
    train_ssl(cfg)
    record = RecordSyncs.last
    log_steps = {step for step, is_log in record.steps if is_log}
    assert len(record.steps) == 24 and log_steps == {19}, record.steps
    in_steps = [e for e in record.recorder.syncs if e.tag != "epoch end"]
    outside_log_steps = [str(e) for e in in_steps if e.tag not in log_steps]
    assert outside_log_steps == [], "\n".join(outside_log_steps)
    on_log_steps = [e for e in in_steps if e.tag in log_steps]
    assert len(on_log_steps) <= MAX_SYNCS_PER_LOG_STEP, "\n".join(map(str, on_log_steps))
    unexpected = [str(e) for e in on_log_steps if not any(place in e.where for place in ALLOWED_ON_LOG_STEPS)]
    assert unexpected == [], "\n".join(unexpected)
    # The user still sees the loss: the progress bar's copy from the log step, the value logged there (to the
    # 4 decimals the bar shows).
    with open(tmp_path / "run" / "metrics.csv") as f:
        logged = {int(r["step"]): float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")}
    assert record.progress_bar_items["loss"] == pytest.approx(logged[19], abs=5e-5), record.progress_bar_items
