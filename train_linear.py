"""Linear probe of a pretrained encoder: one nn.Linear on frozen backbone features.

    python train_linear.py ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt
    python train_linear.py ckpt=... probe.mode=augmented trainer.max_epochs=100
    python train_linear.py model=resnet18 trainer=cpu      # randomly initialised encoder (baseline)

Prints a one-line summary and writes results.json in the run directory.
"""

import hydra
from omegaconf import DictConfig

import simclr  # noqa: F401  (registers the config resolvers)
from simclr.cli import run_job
from simclr.evaluate import train_linear


@hydra.main(version_base="1.3", config_path="conf", config_name="train_linear")
def main(cfg: DictConfig) -> float | None:
    results = run_job(lambda: train_linear(cfg), cfg)
    return None if results is None else results["test_top1"]


if __name__ == "__main__":
    main()
