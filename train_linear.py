"""Linear probe of a pretrained encoder: one nn.Linear on frozen backbone features.

    python train_linear.py ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt
    python train_linear.py ckpt=... probe=sgd_crop_flip     # the public libraries' protocol (SGD, crop + flip)
    python train_linear.py model=resnet18 trainer=cpu      # randomly initialised encoder (baseline)

Prints a one-line summary and writes results.json in the run directory. Returns the validation top-1
to Hydra (None with data.val_size=0), so that a sweep over probe settings never selects on test.
"""

import hydra
from omegaconf import DictConfig

import simclr  # noqa: F401  (registers the config resolvers and schemas)
from simclr.jobs.cli import run_job, run_script
from simclr.jobs.train_linear import train_linear


@hydra.main(version_base="1.3", config_path="conf", config_name="train_linear")
def main(cfg: DictConfig) -> float | None:
    results = run_job(lambda: train_linear(cfg), cfg)
    return None if results is None else results["val_top1"]


if __name__ == "__main__":
    run_script(main, "train_linear")  # a config Hydra refuses: exit 2 and one line
