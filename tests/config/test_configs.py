"""Every config composes, every preset builds its modules, and bad values fail with a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from simclr.config.derived import derive_run_values, eval_batch_size
from simclr.config.rules import check
from simclr.errors import ConfigError
from simclr.jobs.train_ssl import build_module
from simclr.training.optim import build_optimizer
from tests.helpers import CONF, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
    for g in ("data", "model", "augmentation", "optimizer", "trainer", "logger", "probe", "cluster")
}
LINEAR_GROUPS = ("data", "model", "probe", "trainer", "logger")  # the groups train_linear.py has too
MODULE_GROUPS = ("model", "augmentation", "optimizer")  # what the pretraining module is built from


def test_presets_exist() -> None:
    assert {"quickstart", "resnet18_adam", "resnet18_sgd"} <= set(EXPERIMENTS)
    assert {"cpu", "gpu", "ddp"} <= set(GROUPS["trainer"])
    assert {"adam", "sgd", "lars"} <= set(GROUPS["optimizer"])
    assert {"csv", "wandb"} <= set(GROUPS["logger"])
    assert len(GROUPS["augmentation"]) >= 2


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_validates_and_builds_its_module(experiment: str, tmp_path: Path) -> None:
    cfg = compose_config("train_ssl", [f"experiment={experiment}", f"paths.output_dir={tmp_path}"])
    check(cfg)
    assert OmegaConf.get_type(cfg.data).__name__ == "DataConfig"  # composed onto the schema
    derived = derive_run_values(cfg)
    module = build_module(cfg, derived.lr)
    assert module.hparams.lr == derived.lr
    assert cfg.name == experiment


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_validates(group: str, option: str, tmp_path: Path) -> None:
    cfg = compose_config("train_ssl", [f"{group}={option}", f"paths.output_dir={tmp_path}"])
    check(cfg)
    if group in MODULE_GROUPS:
        build_module(cfg, derive_run_values(cfg).lr)
    if group in LINEAR_GROUPS:
        check(compose_config("train_linear", [f"{group}={option}", "ckpt=x.ckpt"]))


def test_seed_and_published_recipes() -> None:
    adam = compose_config("train_ssl", ["experiment=resnet18_adam"])
    assert (adam.model.arch, adam.optimizer.name) == ("resnet18", "adam")
    sgd = compose_config("train_ssl", ["experiment=resnet18_sgd"])
    assert (sgd.model.arch, sgd.optimizer.name, sgd.optimizer.momentum) == ("resnet18", "sgd", 0.9)
    assert (sgd.data.batch_size, sgd.optimizer.weight_decay, sgd.loss.temperature) == (512, 5e-4, 0.5)
    assert sgd.trainer.max_epochs == 1000
    assert derive_run_values(sgd).lr == pytest.approx(0.24)  # lightly's 0.06 per 128 images, at batch 512
    lars = compose_config("train_ssl", ["optimizer=lars"])  # the official code's CIFAR-10 command
    assert (lars.optimizer.lr, lars.optimizer.weight_decay, lars.optimizer.trust_coefficient) == (1.0, 1e-4, 1e-3)
    assert derive_run_values(lars).lr == pytest.approx(2.0)  # 1.0 x 512 / 256


def test_wmse_adam_preset_follows_its_source() -> None:
    # htdt/self-supervised @d9662c8, the contrastive CIFAR-10 command of its README (the preset's header)
    cfg = compose_config("train_ssl", ["experiment=resnet18_wmse_adam"])
    assert (cfg.model.arch, cfg.optimizer.name, cfg.trainer.max_epochs) == ("resnet18", "adam", 1000)
    assert (cfg.data.batch_size, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (512, 3e-3, 1e-6)
    assert not cfg.optimizer.exclude_bias_and_norm  # the source decays every parameter
    assert derive_run_values(cfg).lr == pytest.approx(3e-3)  # not scaled with the batch
    head = cfg.model.head
    assert (head.hidden_dim, head.out_dim, head.num_layers, head.batch_norm) == (1024, 64, 2, True)
    assert head.output_norm.value == "affine"
    assert cfg.loss.temperature == 0.5
    assert list(cfg.augmentation.crop_scale) == [0.2, 1.0] and cfg.augmentation.grayscale_p == 0.1
    assert cfg.augmentation.blur_p == 0.0
    assert round(cfg.scheduler.warmup_epochs * (50_000 // 512)) == 500  # the source's 500 warm-up steps
    assert cfg.scheduler.final_lr_fraction == pytest.approx(0.2 * 0.2)  # its end rate, after two x0.2 drops


def test_paper_augmentation_defaults() -> None:
    aug = compose_config("train_ssl").augmentation
    assert list(aug.crop_scale) == [0.08, 1.0]
    assert (aug.brightness, aug.contrast, aug.saturation, aug.hue, aug.jitter_p) == (0.4, 0.4, 0.4, 0.1, 0.8)
    assert (aug.grayscale_p, aug.blur_p) == (0.2, 0.0)


def test_learning_rate_rule_is_explicit() -> None:
    cfg = compose_config("train_ssl", ["optimizer=sgd", "data.batch_size=1024"])
    assert derive_run_values(cfg).lr == pytest.approx(0.48)  # linear: 0.06 x 1024 / 128
    cfg = compose_config("train_ssl", ["optimizer=lars", "data.batch_size=1024", "optimizer.lr_scaling=sqrt"])
    assert derive_run_values(cfg).lr == pytest.approx(2.0)  # sqrt: 1.0 x sqrt(1024 / 256)
    assert cfg.optimizer.lr == 1.0  # the config itself is never rewritten


def test_global_batch_is_split_over_devices() -> None:
    cfg = compose_config(
        "train_ssl", ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "data.batch_size=1024"]
    )
    derived = derive_run_values(cfg)
    assert (derived.world_size, derived.global_batch, derived.per_device_batch) == (8, 1024, 128)
    with pytest.raises(ConfigError, match="multiple of the 8 devices"):
        derive_run_values(compose_config("train_ssl", ["trainer=ddp", "trainer.devices=8", "data.batch_size=100"]))


def test_evaluation_batch_is_chosen_for_the_device_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # null: small batches on the CPU (oneDNN runs them from the cache), large ones on an accelerator.
    assert derive_run_values(compose_config("train_ssl", ["trainer=cpu"])).eval_batch == 128
    assert derive_run_values(compose_config("train_ssl", ["trainer=gpu"])).eval_batch == 1024
    assert derive_run_values(compose_config("train_ssl", ["trainer=cpu", "data.eval_batch_size=300"])).eval_batch == 300
    for cuda, expected in ((False, 128), (True, 1024)):
        monkeypatch.setattr("torch.cuda.is_available", lambda cuda=cuda: cuda)
        cfg = compose_config("train_linear", ["trainer.accelerator=auto"])
        assert eval_batch_size(cfg) == expected
    assert derive_run_values(compose_config("train_ssl", [])).as_log_dict()["derived/eval_batch"] == 1024  # gpu


def test_everything_overridable_from_command_line() -> None:
    cfg = compose_config(
        "train_ssl",
        [
            "loss.temperature=0.2",
            "data.batch_size=256",
            "model.width=32",
            "augmentation.crop_scale=[0.2,1.0]",
            "optimizer.lr=0.3",
            "trainer.max_epochs=7",
            "knn.k=20",
        ],
    )
    assert (cfg.loss.temperature, cfg.data.batch_size, cfg.model.width, cfg.optimizer.lr) == (0.2, 256, 32, 0.3)
    assert list(cfg.augmentation.crop_scale) == [0.2, 1.0] and cfg.trainer.max_epochs == 7 and cfg.knn.k == 20


@pytest.mark.parametrize(
    "override",
    [
        "loss.temperature=0",
        "loss.temperature=-0.5",
        "augmentation.crop_scale=[0.0,1.0]",
        "augmentation.crop_scale=[0.5,1.5]",
        "augmentation.grayscale_p=2",
        "optimizer.name=rmsprop",
    ],
)
def test_the_modules_guard_their_apis(override: str) -> None:
    """Direct callers of the modules, whose config `check` never saw (which refuses these first: the messages
    are in tests/config/test_schema.py's RANGE_CASES), get a ConfigError naming the key."""
    cfg = compose_config("train_ssl", [override])
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(key.split(".")[-1])):
        module = build_module(cfg, derive_run_values(cfg).lr)
        build_optimizer(module, dict(cfg.optimizer), lr=0.1)


def test_linear_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("train_linear", ["ckpt=some/run/checkpoints/last.ckpt", f"paths.output_dir={tmp_path}"])
    assert cfg.probe.mode == "cached" and cfg.get("model") is None
    cfg = compose_config("train_linear", ["model=resnet18"])
    assert cfg.model.arch == "resnet18"
    with open_dict(cfg):
        assert cfg.trainer.max_epochs == 100


def test_slurm_multinode_config_resolves() -> None:
    """The documented SLURM command composes and its launcher settings follow the trainer (no cluster needed)."""
    overrides = [
        "cluster=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "experiment=resnet18_sgd",
        "hydra.launcher.partition=gpu",
    ]
    cfg = compose_config("train_ssl", overrides, hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu"
    assert cfg.ckpt_path == "auto"  # a requeued job continues from its own last.ckpt
    assert cfg.trainer.strategy._target_ == "pytorch_lightning.strategies.DDPStrategy"
    assert (cfg.trainer.sync_batchnorm, cfg.trainer.num_nodes) == (True, 2)
    derived = derive_run_values(cfg)
    assert (derived.world_size, derived.per_device_batch) == (8, 64)
    assert derived.lr == pytest.approx(0.24)  # linear rule on the global batch: 0.06 x 512 / 128


def test_probe_results_land_in_the_run_they_evaluate(tmp_path: Path) -> None:
    """`ckpt=` given as a checkpoint file, the run directory or its checkpoints/ folder: the probe writes
    into <run>/linear/, named after the checkpoint it evaluates."""
    from simclr.config.resolvers import probe_run_dir

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    for ckpt in (run / "checkpoints" / "last.ckpt", run, run / "checkpoints"):
        out = Path(probe_run_dir(str(ckpt)))
        assert out.parent == run / "linear" and out.name.startswith("last_"), (ckpt, out)
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "checkpoints" / "epoch0001.ckpt").write_bytes(b"")
    assert Path(probe_run_dir(str(run))).name.startswith("newest_")
    assert Path(probe_run_dir(str(run / "checkpoints" / "epoch0001.ckpt"))).name.startswith("epoch0001_")
    assert probe_run_dir(None).startswith("runs/linear/random_")


@pytest.mark.parametrize(
    ("accelerator", "torch_layer", "plugin"), [("gpu", True, False), ("cpu", False, True), ("cuda", True, False)]
)
def test_synchronised_batchnorm_is_the_one_that_runs_on_the_accelerator(
    accelerator: str, torch_layer: bool, plugin: bool
) -> None:
    """trainer.sync_batchnorm=true: torch's SyncBatchNorm on GPUs, AnyDeviceSyncBatchNorm on the CPU (no `+`)."""
    from simclr.training.sync_batchnorm import AnyDeviceSyncBatchNormPlugin, batchnorm_sync

    cfg = compose_config("train_ssl", ["trainer=ddp", f"trainer.accelerator={accelerator}"])
    chosen = batchnorm_sync(cfg.trainer)
    assert chosen.sync_batchnorm is torch_layer
    assert isinstance(chosen.plugin, AnyDeviceSyncBatchNormPlugin) is plugin
    off = batchnorm_sync(compose_config("train_ssl", ["trainer=cpu"]).trainer)
    assert (off.sync_batchnorm, off.plugin) == (False, None)
