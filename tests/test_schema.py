"""Configs that refuse bad values: typed at composition, ranges checked before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from simclr.config.rules import check
from simclr.config.schema import TrainLinearConfig, TrainSSLConfig
from simclr.errors import ConfigError
from simclr.jobs.cli import describe
from tests.conftest import CONF, REPO, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
    for g in ("data", "model", "augmentation", "optimizer", "trainer", "logger", "probe", "cluster")
}
LINEAR_GROUPS = ("data", "model", "probe", "trainer", "logger")


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


# ---- every config the project ships composes and validates ------------------------------------------


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_validates(experiment: str) -> None:
    cfg = compose_config("train_ssl", [f"experiment={experiment}"])
    check(cfg)
    assert OmegaConf.get_type(cfg.data).__name__ == "DataConfig"  # composed onto the schema


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_validates(group: str, option: str) -> None:
    check(compose_config("train_ssl", [f"{group}={option}"]))
    if group in LINEAR_GROUPS:
        check(compose_config("train_linear", [f"{group}={option}", "ckpt=x.ckpt"]))


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
    added = "trainer.deterministic is not set in conf/; add it with +trainer.deterministic=true"
    assert _refused_at_composition("train_ssl", ["trainer.deterministic=true"]) == added  # Trainer arguments: + adds
    cfg = compose_config("train_ssl", ["+trainer.deterministic=true"])
    assert cfg.trainer.deterministic is True
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
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    adam = conf / "optimizer" / "adam.yaml"
    adam.write_text(adam.read_text().replace("weight_decay:", "weight_decy:"))
    proc = _run("train_ssl.py", [f"--config-path={conf}", "trainer=cpu"], tmp_path)
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert line == (
        f"error: optimizer.weight_decy (in {adam.resolve()}) is not a key of optimizer; "
        "did you mean optimizer.weight_decay?"
    ), line
    assert list(tmp_path.iterdir()) == [conf]  # nothing written


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
    "loss.temperature=nan": "loss.temperature=nan must be > 0;",
    "augmentation.flip_p=1.5": "augmentation.flip_p=1.5 must be in [0, 1]; it is a probability",
    "augmentation.hue=0.7": "augmentation.hue=0.7 must be in [0, 0.5];",
    "augmentation.brightness=-0.1": "augmentation.brightness=-0.1 must be >= 0;",
    "augmentation.crop_scale=[0.5,0.2]": "augmentation.crop_scale=[0.5, 0.2] must be [min, max] with 0 < min <= max",
    "augmentation.blur_kernel_size=4": "augmentation.blur_kernel_size=4 must be odd;",
    "data.batch_size=0": "data.batch_size=0 must be an integer >= 1;",
    "data.eval_batch_size=0": "data.eval_batch_size=0 must be an integer >= 1;",
    "data.val_size=-1": "data.val_size=-1 must be an integer >= 0;",
    "model.width=0": "model.width=0 must be an integer >= 1;",
    "model.head.out_dim=0": "model.head.out_dim=0 must be an integer >= 1;",
    "augmentation.num_workers=-1": "augmentation.num_workers=-1 must be an integer >= 0;",
    "optimizer=sgd optimizer.momentum=1.0": "optimizer.momentum=1 must be in [0, 1);",
    "optimizer.name=sgd": "optimizer.name=sgd does not match the optimizer group's keys (optimizer=adam); select",
    "optimizer=sgd optimizer.name=adam": "optimizer.name=adam does not match the optimizer group's keys (optimizer=sgd",
    "data.batch_size=1": "data.batch_size=1 leaves 1 image per process and step",
    "trainer=ddp data.batch_size=2": "data.batch_size=2 leaves 1 image per process and step",
    "optimizer.betas=[0.9,1.0]": "optimizer.betas=[0.9, 1] must be two numbers in [0, 1);",
    "scheduler.warmup_epochs=-1": "scheduler.warmup_epochs=-1 must be >= 0;",
    "scheduler.final_lr_fraction=1.5": "scheduler.final_lr_fraction=1.5 must be in [0, 1];",
    "trainer.max_epochs=0": "trainer.max_epochs=0 must be an integer >= 1;",
    "trainer.max_epochs=-1": "trainer.max_epochs=-1 must be an integer >= 1;",
    "+trainer.max_steps=0": "trainer.max_steps=0 must be an integer >= 1 or -1;",
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


def test_max_steps_may_end_the_run() -> None:
    check(compose_config("train_ssl", ["trainer.max_epochs=-1", "+trainer.max_steps=100"]))
    check(compose_config("train_ssl", ["+trainer.max_steps=100"]))


def test_a_broken_interpolation_is_one_line() -> None:
    cfg = compose_config("train_ssl")
    with open_dict(cfg):
        cfg.divergence.check_every_n_steps = "${trainer.no_such_key}"
    with pytest.raises(ConfigError, match=r"^divergence\.check_every_n_steps cannot be read \("):
        check(cfg)


# ---- through the real scripts: exit status 2, one line, nothing written -------------------------------

SCRIPT_CASES = [
    # (script, overrides, the start of the error line): one of each way a value is refused; the others below
    ("train_ssl.py", ["knn.k=0"], "knn.k=0 must be an integer >= 1"),  # validate, in CheckConfig
    ("train_linear.py", ["probe.epochs=0"], "probe.epochs=0 must be an integer >= 1"),
    ("train_ssl.py", ["data.batch_size=abc"], "data.batch_size=abc must be an integer"),  # composition
    ("train_ssl.py", ["optimizer.lrr=1"], "optimizer.lrr is not a key of optimizer; did you mean optimizer.lr?"),
]
MORE_SCRIPT_CASES = [  # one per family of knobs: the same path as knn.k=0, five seconds each (`pytest -m slow`)
    ("train_ssl.py", ["optimizer.lr=0"], "optimizer.lr=0 must be > 0"),
    ("train_ssl.py", ["loss.temperature=0"], "loss.temperature=0 must be > 0"),
    ("train_ssl.py", ["augmentation.flip_p=1.5"], "augmentation.flip_p=1.5 must be in [0, 1]"),
    ("train_ssl.py", ["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1"),
    ("train_ssl.py", ["model.width=0"], "model.width=0 must be an integer >= 1"),
    ("train_ssl.py", ["optimizer=sgd", "optimizer.momentum=1.0"], "optimizer.momentum=1 must be in [0, 1)"),
    ("train_ssl.py", ["scheduler.warmup_epochs=-1"], "scheduler.warmup_epochs=-1 must be >= 0"),
    ("train_ssl.py", ["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
    ("train_ssl.py", ["checkpoint.every_n_epochs=0"], "checkpoint.every_n_epochs=0 must be an integer >= 1"),
    ("train_linear.py", ["probe.lr=0"], "probe.lr=0 must be > 0"),
    ("train_linear.py", ["probe.batch_size=big"], "probe.batch_size=big must be an integer"),
]
TINY_SWEEP = [
    "model=resnet_tiny",
    "model.width=4",
    "model.head.hidden_dim=32",
    "trainer=cpu",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.val_size=50",
    "knn.k=20",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "scheduler.warmup_epochs=0",
    "data.download=false",
]


def _script_case(script: str, overrides: list[str], cwd: Path, cifar_root: Path) -> subprocess.CompletedProcess:
    args = ["trainer=cpu", f"data.root={cifar_root}", "data.download=false", "hydra.run.dir=run", *overrides]
    return _run(script, args + (["model=resnet_tiny"] if script == "train_linear.py" else []), cwd)


def _check_refused(script: str, line: str, cwd: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert _one_error_line(proc.stderr).startswith(f"error: {line}"), proc.stderr[-3000:]
    assert list(cwd.iterdir()) == [], f"{script} wrote {sorted(str(p) for p in cwd.rglob('*'))}"


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory: pytest.TempPathFactory, cifar_root: Path) -> dict[Any, tuple[Path, Any]]:
    """Every case of SCRIPT_CASES, and a sweep with one bad job, run once, as many at a time as cores."""

    def one(case: int | str) -> tuple[Any, tuple[Path, subprocess.CompletedProcess]]:
        cwd = tmp_path_factory.mktemp(f"case{case}")
        if case == "sweep":
            args = ["-m", *TINY_SWEEP, f"data.root={cifar_root}", "knn.k=0,5", "hydra.sweep.dir=sweep"]
            return case, (cwd, _run("train_ssl.py", args, cwd))
        script, overrides, _ = SCRIPT_CASES[case]
        return case, (cwd, _script_case(script, overrides, cwd, cifar_root))

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(pool.map(one, ["sweep", *range(len(SCRIPT_CASES))]))


@pytest.mark.parametrize("case", range(len(SCRIPT_CASES)), ids=[" ".join(c[1]) for c in SCRIPT_CASES])
def test_bad_value_stops_the_script_before_anything_is_written(case: int, script_runs: dict) -> None:
    script, _, line = SCRIPT_CASES[case]
    _check_refused(script, line, *script_runs[case])


@pytest.mark.slow
@pytest.mark.parametrize("script, overrides, line", MORE_SCRIPT_CASES, ids=[" ".join(c[1]) for c in MORE_SCRIPT_CASES])
def test_every_family_of_knobs_through_the_script(
    script: str, overrides: list[str], line: str, cifar_root: Path, tmp_path: Path
) -> None:
    _check_refused(script, line, tmp_path, _script_case(script, overrides, tmp_path, cifar_root))


def test_a_bad_value_fails_its_sweep_job_alone(script_runs: dict) -> None:
    cwd, proc = script_runs["sweep"]
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep report: 1 of 2 jobs failed
    bad, good = (json.loads((cwd / "sweep" / str(i) / "status.json").read_text()) for i in (0, 1))
    assert bad["status"] == "failed" and bad["error"].startswith("knn.k=0 must be an integer >= 1"), bad
    assert good["status"] == "completed", good
    assert sorted(p.name for p in (cwd / "sweep" / "0").iterdir()) == [".hydra", "status.json", "train_ssl.log"]
    assert (cwd / "sweep" / "1" / "checkpoints" / "last.ckpt").is_file()


def test_validate_is_what_run_job_calls(tmp_path: Path) -> None:
    """Direct use: run_job validates before the job runs, so a multirun job fails before it starts."""
    from simclr.jobs.cli import run_job

    cfg: DictConfig = compose_config("train_ssl", ["knn.k=0", f"paths.output_dir={tmp_path}"])
    ran = []
    with pytest.raises(SystemExit) as caught:
        run_job(lambda: ran.append(1), cfg)
    assert caught.value.code == 2 and ran == []
    assert json.loads((tmp_path / "status.json").read_text())["error"].startswith("knn.k=0 must be")
