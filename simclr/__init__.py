"""SimCLR self-supervised learning on CIFAR-10: data, device-side augmentation, nets, loss, modules.

`simclr.load_encoder(path)` gives the encoder of a pretraining checkpoint, run directory or export
(`python -m simclr.jobs.export`), frozen or trainable: see simclr/jobs/load.py.
"""

from __future__ import annotations

from typing import Any

from simclr.config.resolvers import register_resolvers
from simclr.config.schema import register_schemas

register_resolvers()
register_schemas()  # the typed schemas conf/train_ssl.yaml and conf/train_linear.yaml start from

__version__ = "0.1.0"
__all__ = ["load_encoder"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import simclr` still loads no torch.
    if name == "load_encoder":
        from simclr.jobs.load import load_encoder

        return load_encoder
    raise AttributeError(f"module 'simclr' has no attribute {name!r}")
