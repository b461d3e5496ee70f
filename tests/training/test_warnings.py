"""Lightning's advice is silenced only where it does not apply: the probe's encoder is in eval mode on
purpose, a pretraining module in eval mode is a bug and must still be reported."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from omegaconf import DictConfig, open_dict

from simclr.jobs.train_linear import train_linear
from simclr.jobs.train_ssl import train_ssl
from tests.helpers import probe_config

EVAL_MODE = r"module\(s\) in eval mode at the start of training"


def test_a_pretraining_module_left_in_eval_mode_still_warns(ssl_cfg: DictConfig) -> None:
    with open_dict(ssl_cfg):
        ssl_cfg.trainer.max_epochs = 1
        ssl_cfg.trainer.callbacks = [{"_target_": "tests.callbacks.HeadInEvalMode"}]
    with pytest.warns(UserWarning, match=EVAL_MODE):
        train_ssl(ssl_cfg)


def test_the_probe_with_its_frozen_encoder_does_not(cifar_root: Path, ssl_checkpoint: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_linear(probe_config(cifar_root, tmp_path, [f"ckpt={ssl_checkpoint}", "trainer.max_epochs=1"]))
    assert not [w for w in caught if "eval mode" in str(w.message)]
    # nor Lightning's own use of a torch API torch 2.14 deprecates, at the end of the fit
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    # and the filter did not leak out of the probe's fit
    with pytest.warns(UserWarning, match=EVAL_MODE):
        warnings.warn("Found 1 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1)
