"""SimCLR self-supervised learning on CIFAR-10: data, device-side augmentation, nets, loss, modules."""

from simclr.config import register_resolvers
from simclr.schema import register_schemas

register_resolvers()
register_schemas()  # the typed schemas conf/train_ssl.yaml and conf/train_linear.yaml start from

__version__ = "0.1.0"
