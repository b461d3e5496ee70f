"""Pictures of what an encoder learned: view pairs, a 2-D embedding map, a confusion matrix.

Each function returns a matplotlib Figure (or an image array), so the same code serves the loggers,
the run directory's figures/ folder and the notebook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from simclr.views.augment import SimCLRAugment

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def new_figure(figsize: tuple[float, float], ncols: int = 1):  # noqa: ANN202 - (Figure, Axes or array of Axes)
    """A Figure outside pyplot: no global backend switch, safe in scripts, servers and notebooks; `ncols`
    panels side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(ncols=ncols)


def view_pairs(images: torch.Tensor, augment: SimCLRAugment, seed: int = 0, zoom: int = 3) -> np.ndarray:
    """uint8 images (n, 3, H, W) -> uint8 HWC grid: each column is an image over its two views.

    Pixels are repeated `zoom` times each way, so that 32 x 32 images can be seen on a dashboard; views
    smaller than their image (`augmentation.size`) are scaled (nearest) to the image's size first.

    Draws from its own generator, so that showing views never shifts the training run's random stream.
    """
    gen = torch.Generator(device=images.device).manual_seed(seed)
    v1, v2 = augment(images, gen), augment(images, gen)

    def unnorm(v: torch.Tensor) -> torch.Tensor:
        v = F.interpolate(v, size=images.shape[-2:], mode="nearest")  # a copy where the sizes are equal
        return (v * augment.std + augment.mean).clamp(0, 1)

    grid = make_grid(torch.cat([images.float() / 255, unnorm(v1), unnorm(v2)]), nrow=len(images), padding=2)
    grid = grid.repeat_interleave(zoom, dim=1).repeat_interleave(zoom, dim=2)
    return (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def embedding_map(features: torch.Tensor, labels: torch.Tensor, title: str = "test embeddings (PCA)"):  # noqa: ANN201
    """Features (N, D) projected on their first two principal components, coloured by class."""
    x = features.float() - features.float().mean(0)
    # Exact PCA from the D x D covariance: deterministic, and no draw from the global RNG.
    _, vectors = torch.linalg.eigh(x.T.double() @ x.double())
    xy = (x.double() @ vectors[:, -2:].flip(1)).cpu().numpy()
    fig, ax = new_figure(figsize=(5.5, 4.5))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4, vmin=-0.5, vmax=9.5)
    cbar = fig.colorbar(scatter, ax=ax, ticks=range(10))
    cbar.ax.set_yticklabels(CLASSES)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def confusion_figure(matrix: torch.Tensor, title: str = "linear probe, test split"):  # noqa: ANN201
    """A (10, 10) confusion matrix of counts (rows: true class) -> heat map with row-normalised rates."""
    rates = (matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)).cpu().numpy()
    fig, ax = new_figure(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(10), CLASSES, rotation=60, ha="right")
    ax.set_yticks(range(10), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(10):
        for j in range(10):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> Path:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def figure_to_array(fig) -> np.ndarray:  # noqa: ANN001
    """A matplotlib Figure -> uint8 HWC RGB array (what image loggers take)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
