"""Configs that refuse bad values: typed at composition, ranges checked before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from simclr.config.rules import check
from simclr.config.schema import TrainLinearConfig, TrainSSLConfig
from simclr.errors import ConfigError
from simclr.jobs.cli import CheckConfig, describe
from tests.helpers import CONF, compose_config

# Every preset and group option composing and validating: tests/config/test_configs.py.


def test_schema_defaults_are_the_default_options() -> None:
    """The dataclass defaults (the examples in error messages) are the values conf/ gives by default."""

    def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict):
            return {k: v for key, sub in node.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: node}

    for name, schema, overrides in [
        ("train_ssl", TrainSSLConfig, []),
        ("train_linear", TrainLinearConfig, ["model=resnet18"]),
    ]:
        composed = leaves(OmegaConf.to_container(compose_config(name, overrides), resolve=False))
        defaults = leaves(OmegaConf.to_container(OmegaConf.structured(schema), resolve=False))
        compared = 0
        for key, default in defaults.items():
            if default is None or isinstance(default, str) and "${" in default:
                continue  # optional keys of some options only (optimizer.momentum), interpolations
            if key.startswith("model.") and name == "train_linear":
                continue  # model is null there; the composed one is resnet18's
            if key.startswith("trainer."):
                continue  # Lightning's own defaults, read from its signature; conf/trainer/ sets its own
            assert composed[key] == default, f"{name}: schema default {key}={default!r}, conf has {composed[key]!r}"
            compared += 1
        assert compared > 15  # data and probe at least


# ---- wrong types and unknown keys: refused while Hydra composes -------------------------------------


@pytest.mark.parametrize(
    "override, line",
    [
        ("data.batch_size=abc", "data.batch_size=abc must be an integer; give one, e.g. data.batch_size=512"),
        ("optimizer.lr=fast", "optimizer.lr=fast must be a number; give one, e.g. optimizer.lr=0.001"),
        ("model.head.batch_norm=maybe", "model.head.batch_norm=maybe must be true or false"),
        ("augmentation.crop_scale=[0.2,big]", "augmentation.crop_scale=[0.2,big] must be a list of numbers"),
        ("knn.k=2.5", "knn.k=2.5 must be an integer"),
        # choices are Enums: OmegaConf refuses what is not one of them
        ("model.arch=vgg", "model.arch='vgg' is not known; choose one of ['resnet18'"),
        (
            "model.head.output_norm=layer",
            "model.head.output_norm='layer' is not known; choose one of ['affine', 'scale'",
        ),
        ("augmentation.backend=kornia", "augmentation.backend='kornia' is not known; choose one of ['device', 'torch"),
        ("optimizer.lr_scaling=cubic", "optimizer.lr_scaling='cubic' is not known"),
        ("probe.mode=fancy", "probe.mode='fancy' is not known"),
        ("probe.optimizer=lbfgs", "probe.optimizer='lbfgs' is not known"),
    ],
)
def test_wrong_type_is_refused_at_composition(override: str, line: str) -> None:
    message = _refused_at_composition("train_ssl", [override])
    assert message.startswith(line), message
    assert "\n" not in message


def _refused_at_composition(script: str, overrides: list[str]) -> str:
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(script, overrides)
    return describe(caught.value, overrides)


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    lrr = _refused_at_composition("train_ssl", ["optimizer.lrr=1"])
    assert lrr == "optimizer.lrr is not a key of optimizer; did you mean optimizer.lr?"
    epoch = _refused_at_composition("train_linear", ["probe.epoch=3"])
    assert epoch == "probe.epoch is not a key of probe; did you mean probe.epochs?"
    # Every Trainer argument of the installed Lightning is a key (simclr/config/signature_schema.py), typed.
    assert compose_config("train_ssl", ["trainer.deterministic=true"]).trainer.deterministic is True
    near = _refused_at_composition("train_ssl", ["trainer.deterministc=true"])
    assert near == "trainer.deterministc is not a key of trainer; did you mean trainer.deterministic?"
    word = _refused_at_composition("train_ssl", ["trainer.enable_progress_bar=maybe"])
    assert word.startswith("trainer.enable_progress_bar=maybe must be true or false or null")
    assert _refused_at_composition("train_ssl", ["trainer.default_root_dir=x"]).startswith(
        "trainer.default_root_dir is not a key of trainer"  # paths.output_dir sets it
    )
    with pytest.raises(ConfigError, match=r"^optimizer\.lrr is not a key of optimizer; did you mean optimizer\.lr\?"):
        check(compose_config("train_ssl", ["+optimizer.lrr=1"]))  # forced past the schema: the rules refuse it


def test_a_key_of_another_optimizer_is_refused_by_its_schema() -> None:
    """Each optimizer has its own dataclass: SGD has no betas, Adam no momentum."""
    betas = _refused_at_composition("train_ssl", ["optimizer=sgd", "optimizer.betas=[0.9,0.99]"])
    assert betas.startswith("optimizer.betas is not a key of optimizer; its keys are ['name', 'lr'"), betas
    assert "momentum" in betas and "betas'" not in betas
    momentum = _refused_at_composition("train_ssl", ["optimizer.momentum=0.9"])
    assert momentum.startswith("optimizer.momentum is not a key of optimizer;"), momentum
    assert OmegaConf.get_type(compose_config("train_ssl", ["optimizer=lars"]).optimizer).__name__ == "LARSConfig"


def test_a_misspelt_key_in_a_conf_file_names_the_file(tmp_path: Path) -> None:
    """A copy of conf/ given with --config-path, its adam.yaml misspelt: the line names that file."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    adam = conf / "optimizer" / "adam.yaml"
    adam.write_text(adam.read_text().replace("weight_decay:", "weight_decy:"))
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config("train_ssl", ["trainer=cpu"], conf=conf)
    assert describe(caught.value, [f"--config-path={conf}", "trainer=cpu"]) == (
        f"optimizer.weight_decy (in {adam.resolve()}) is not a key of optimizer; did you mean optimizer.weight_decay?"
    )
    # Without --config-path the files searched are conf/'s, which do not set the key.
    assert describe(caught.value, ["trainer=cpu"]).startswith("optimizer.weight_decy is not a key of optimizer;")


def test_unknown_group_option_is_one_line() -> None:
    message = _refused_at_composition("train_ssl", ["model=vgg"])
    assert message.startswith("model=vgg is not an option of model; choose one of ['resnet18'"), message
    assert "\n" not in message


# ---- ranges: validate ---------------------------------------------------------------------------------

RANGE_CASES = {
    # override: the start of the one-line message
    "optimizer.lr=0": "optimizer.lr=0 must be > 0;",
    "optimizer.lr=-1e-3": "optimizer.lr=-0.001 must be > 0;",
    "optimizer.weight_decay=-1": "optimizer.weight_decay=-1 must be >= 0;",
    "optimizer.base_batch_size=0": "optimizer.base_batch_size=0 must be an integer >= 1;",
    "knn.k=0": "knn.k=0 must be an integer >= 1;",
    "knn.temperature=0": "knn.temperature=0 must be > 0;",
    "loss.temperature=0": "loss.temperature=0 must be > 0;",
    "loss.temperature=-0.5": "loss.temperature=-0.5 must be > 0",
    "loss.temperature=nan": "loss.temperature=nan must be > 0;",
    "augmentation.flip_p=1.5": "augmentation.flip_p=1.5 must be in [0, 1]; it is a probability",
    "augmentation.hue=0.7": "augmentation.hue=0.7 must be in [0, 0.5];",
    "augmentation.brightness=-0.1": "augmentation.brightness=-0.1 must be >= 0;",
    "augmentation.crop_scale=[0.5,0.2]": "augmentation.crop_scale=[0.5, 0.2] must be [min, max] with 0 < min <= max",
    "augmentation.crop_scale=[0.0,1.0]": "augmentation.crop_scale=[0, 1] must be [min, max] with 0 < min",
    "augmentation.crop_scale=[0.5,1.5]": "augmentation.crop_scale=[0.5, 1.5] must be [min, max]",
    "augmentation.grayscale_p=2": "augmentation.grayscale_p=2 must be in [0, 1]",
    "augmentation.blur_kernel_size=4": "augmentation.blur_kernel_size=4 must be odd;",
    "augmentation.size=0": "augmentation.size=0 must be an integer >= 1 or null; the views' side in pixels",
    "augmentation.size=-4": "augmentation.size=-4 must be an integer >= 1 or null;",
    "data.batch_size=0": "data.batch_size=0 must be an integer >= 1;",
    "data.eval_batch_size=0": "data.eval_batch_size=0 must be an integer >= 1 or null;",
    "data.val_size=-1": "data.val_size=-1 must be an integer >= 0;",
    "model.width=0": "model.width=0 must be an integer >= 1;",
    "model.head.out_dim=0": "model.head.out_dim=0 must be an integer >= 1;",
    "augmentation.num_workers=-1": "augmentation.num_workers=-1 must be an integer >= 0;",
    "optimizer=sgd optimizer.momentum=1.0": "optimizer.momentum=1 must be in [0, 1);",
    "optimizer.name=sgd": "optimizer.name=sgd does not match the optimizer group's keys (optimizer=adam); select",
    "optimizer.name=rmsprop": "optimizer.name=rmsprop does not match the optimizer group's keys",
    "optimizer=sgd optimizer.name=adam": "optimizer.name=adam does not match the optimizer group's keys (optimizer=sgd",
    "data.batch_size=1": "data.batch_size=1 leaves 1 image per process and step",
    "trainer=ddp data.batch_size=2": "data.batch_size=2 leaves 1 image per process and step",
    "optimizer.betas=[0.9,1.0]": "optimizer.betas=[0.9, 1] must be two numbers in [0, 1);",
    "scheduler.warmup_epochs=-1": "scheduler.warmup_epochs=-1 must be >= 0;",
    "scheduler.final_lr_fraction=1.5": "scheduler.final_lr_fraction=1.5 must be in [0, 1];",
    "trainer.max_epochs=0": "trainer.max_epochs=0 must be an integer >= 1;",
    "trainer.max_epochs=-1": "trainer.max_epochs=-1 must be an integer >= 1;",
    "trainer.max_steps=0": "trainer.max_steps=0 must be an integer >= 1 or -1;",
    "trainer.log_every_n_steps=0": "trainer.log_every_n_steps=0 must be an integer >= 1;",
    "trainer.check_val_every_n_epoch=0": "trainer.check_val_every_n_epoch=0 must be an integer >= 1;",
    "trainer.limit_train_batches=0": "trainer.limit_train_batches=0 must be an integer >= 1 (batches) or a fraction",
    "trainer.devices=0": "trainer.devices=0 and trainer.num_nodes=1 must be positive integers",
    "trainer=ddp data.batch_size=511": "data.batch_size=511 (the global batch) must be a positive multiple",
    "divergence.check_every_n_steps=0": "divergence.check_every_n_steps=0 must be an integer >= 1;",
    "checkpoint.every_n_epochs=0": "checkpoint.every_n_epochs=0 must be an integer >= 1;",
    "checkpoint.keep=-2": "checkpoint.keep=-2 must be an integer >= -1;",
    "probe.epochs=0": "probe.epochs=0 must be an integer >= 1;",
    "probe.lr=0": "probe.lr=0 must be > 0;",
    "probe.momentum=1": "probe.momentum=1 must be in [0, 1);",
    "probe.batch_size=0": "probe.batch_size=0 must be an integer >= 1;",
    "probe.crop_scale=[0,1]": "probe.crop_scale=[0, 1] must be [min, max] with 0 < min <= max <= 1",
    "seed=-1": "seed=-1 must be an integer in [0, 4294967295];",
    "model.compile_mode=max-autotune": "model.compile_mode='max-autotune' has no effect without compilation",
}


@pytest.mark.parametrize("overrides", list(RANGE_CASES))
def test_out_of_range_value_is_named(overrides: str) -> None:
    cfg = compose_config("train_ssl", overrides.split())
    with pytest.raises(ConfigError) as caught:
        check(cfg)
    message = str(caught.value)
    assert message.startswith(RANGE_CASES[overrides]), message
    assert "\n" not in message


def test_linear_only_checks() -> None:
    check(compose_config("train_linear", ["ckpt=x.ckpt"]))
    with pytest.raises(ConfigError, match=r"^probe\.enabled=true must be false in train_linear\.py"):
        check(compose_config("train_linear", ["ckpt=x.ckpt", "probe.enabled=true"]))
    with pytest.raises(ConfigError, match=r"^probe\.epochs=0 must be an integer >= 1"):
        check(compose_config("train_linear", ["ckpt=x.ckpt", "probe.epochs=0"]))
    with pytest.raises(ConfigError, match=r"^trainer\.max_epochs=0 must be an integer >= 1"):
        check(compose_config("train_linear", ["ckpt=x.ckpt", "trainer.max_epochs=0"]))
    with pytest.raises(ConfigError, match=r"^model\.compile=true must be false in train_linear\.py"):
        check(compose_config("train_linear", ["model=resnet18", "model.compile=true"]))


def test_view_sizes_pass() -> None:
    check(compose_config("train_ssl", ["augmentation.size=20"]))
    check(compose_config("train_ssl", ["augmentation.size=null"]))


def test_max_steps_may_end_the_run() -> None:
    check(compose_config("train_ssl", ["trainer.max_epochs=-1", "trainer.max_steps=100"]))
    check(compose_config("train_ssl", ["trainer.max_steps=100"]))


def test_a_broken_interpolation_is_one_line() -> None:
    cfg = compose_config("train_ssl")
    with open_dict(cfg):
        cfg.divergence.check_every_n_steps = "${trainer.no_such_key}"
    line = r"^divergence\.check_every_n_steps=\$\{trainer\.no_such_key\} cannot be resolved \(.*\); an interpolation"
    with pytest.raises(ConfigError, match=line):
        check(cfg)


def test_a_broken_interpolation_no_rule_reads_is_one_line() -> None:
    """logger.name is read by the logger alone, in the job: the rules still resolve every interpolation first."""
    cfg = compose_config("train_ssl")
    with open_dict(cfg):
        cfg.logger.name = "${nope}"
    with pytest.raises(ConfigError, match=r"^logger\.name=\$\{nope\} cannot be resolved"):
        check(cfg)


def test_a_deleted_section_the_job_reads_is_one_line() -> None:
    cfg = compose_config("train_ssl", ["~paths"])
    with pytest.raises(ConfigError, match=r"^paths is deleted, but the job reads it; remove ~paths"):
        check(cfg)


# ---- the callback and the job: what the scripts run before anything is written ---------------------------
# The scripts themselves (one line, exit status 2, nothing written): tests/jobs/test_e2e.py. A sweep job that breaks
# a rule fails alone: tests/jobs/test_sweep.py.


@pytest.mark.parametrize(
    "script, overrides, line",
    [
        ("train_ssl", ["knn.k=0"], "knn.k=0 must be an integer >= 1"),
        ("train_linear", ["ckpt=x.ckpt", "probe.epochs=0"], "probe.epochs=0 must be an integer >= 1"),
    ],
)
def test_each_script_checks_its_config_before_the_run_starts(
    script: str, overrides: list[str], line: str, capsys: pytest.CaptureFixture
) -> None:
    """Both scripts' configs register CheckConfig (conf/*.yaml: hydra/callbacks), which Hydra calls before it
    creates the run directory: a rule broken stops there, with one line and exit status 2."""
    cfg = compose_config(script, overrides, hydra=True)
    assert cfg.hydra.callbacks.check_config._target_ == "simclr.jobs.cli.CheckConfig"
    with pytest.raises(SystemExit) as stopped:
        CheckConfig().on_run_start(cfg)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {line}")


def test_validate_is_what_run_job_calls(tmp_path: Path) -> None:
    """Direct use: run_job validates before the job runs, so a multirun job fails before it starts."""
    from simclr.jobs.cli import run_job

    cfg: DictConfig = compose_config("train_ssl", ["knn.k=0", f"paths.output_dir={tmp_path}"])
    ran = []
    with pytest.raises(SystemExit) as caught:
        run_job(lambda: ran.append(1), cfg)
    assert caught.value.code == 2 and ran == []
    assert json.loads((tmp_path / "status.json").read_text())["error"].startswith("knn.k=0 must be")
