"""The two augmented views of each image.

augment.py: `SimCLRAugment`, the batched on-device pipeline (the production path): per-sample random
parameters, crop + flip (crop.py), colour jitter and grayscale (colour.py), normalisation.
torchvision_reference.py: the per-image torchvision pipeline the device path is checked against.
"""
