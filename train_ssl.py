"""SimCLR pretraining on CIFAR-10.

    python train_ssl.py experiment=quickstart                 # small ResNet, CPU, ~4 min (bf16 where the CPU has it)
    python train_ssl.py experiment=resnet18_sgd               # the published recipe, one GPU
    python train_ssl.py trainer=ddp trainer.devices=4         # four GPUs, global batch data.batch_size
    python train_ssl.py -m loss.temperature=0.2,0.5 data.batch_size=256,512   # a sweep
    python train_ssl.py -m sweep=temperature_batch            # Optuna: 20 trials, temperature x batch size
    python train_ssl.py ckpt_path=runs/ssl/<date>/<time>/checkpoints/last.ckpt   # resume

Returns a validation metric to Hydra, for sweepers that optimise it: the probe's validation top-1 with
probe.enabled=true, else the kNN monitor's (val/knn_top1); None with data.val_size=0 (no validation
set: a sweep never selects on the test split) and for a failed job of a multirun, which the Optuna
sweeper records as a failed trial before it goes on.
"""

import hydra
from omegaconf import DictConfig

import simclr  # noqa: F401  (registers the config resolvers and schemas)
from simclr.jobs.cli import run_job, run_script
from simclr.jobs.sweep import objective
from simclr.jobs.train_ssl import train_ssl


@hydra.main(version_base="1.3", config_path="conf", config_name="train_ssl")
def main(cfg: DictConfig) -> float | None:
    metrics = run_job(lambda: train_ssl(cfg), cfg)
    return None if metrics is None else objective(metrics)[1]


if __name__ == "__main__":
    run_script(main, "train_ssl")  # a config Hydra refuses: exit 2 and one line
