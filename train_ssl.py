"""SimCLR pretraining on CIFAR-10.

    python train_ssl.py experiment=quickstart                 # small ResNet, CPU, ~11 min
    python train_ssl.py experiment=resnet18_sgd               # the published recipe, one GPU
    python train_ssl.py trainer=ddp trainer.devices=4         # four GPUs, global batch data.batch_size
    python train_ssl.py -m loss.temperature=0.2,0.5 data.batch_size=256,512   # a sweep
    python train_ssl.py ckpt_path=runs/ssl/<date>/<time>/checkpoints/last.ckpt   # resume

Returns val/knn_top1 to Hydra, for sweepers that optimise it.
"""

import hydra
from omegaconf import DictConfig

import simclr  # noqa: F401  (registers the config resolvers)
from simclr.cli import run_job
from simclr.train import train_ssl


@hydra.main(version_base="1.3", config_path="conf", config_name="train_ssl")
def main(cfg: DictConfig) -> float | None:
    metrics = run_job(lambda: train_ssl(cfg), cfg)
    return None if metrics is None else metrics.get("val/knn_top1")


if __name__ == "__main__":
    main()
