"""The two augmented views of each image: the batched on-device SimCLR augmentation (the production path)
and the per-image torchvision pipeline it is checked against.
"""
