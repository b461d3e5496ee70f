"""SimCLR self-supervised learning on CIFAR-10: data, device-side augmentation, nets, loss, modules."""

from simclr.config import register_resolvers

register_resolvers()

__version__ = "0.1.0"
