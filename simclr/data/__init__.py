"""CIFAR-10 from disk to uint8 batches on the training device: the files, the validation split, the
LightningDataModule both entry points share, and the per-image batches of the torchvision reference path.
"""
