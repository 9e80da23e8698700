"""Figures of lecture 02 (the dataset and joint augmentation), made with segkit.

    python lectures/make_figures.py --only s02
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from segkit import paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOCSegmentation, train_transforms
from segkit.inference import window_starts


def _train_set() -> VOCSegmentation:
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    return VOCSegmentation(root, "train")


def augmentations() -> Figure:
    """One image and five draws of segkit.data.train_transforms (crop = image size, so the scale shows:
    zoomed in above 1, padded with void below 1)."""
    image, mask = _train_set()[1]
    size = max(mask.shape)
    transform = train_transforms(size, scale_range=(0.5, 2.0), base_size=size)
    torch.manual_seed(0)
    views = [(image, mask)] + [transform(image, mask) for _ in range(5)]
    figure, axes = plt.subplots(2, 6, figsize=(10, 3.7))
    for column, (view_image, view_mask) in enumerate(views):
        axes[0, column].imshow(viz.image_to_uint8(view_image))
        axes[1, column].imshow(viz.colorize(view_mask), interpolation="nearest")
        axes[0, column].set_title("original" if column == 0 else f"draw {column}", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def nearest_vs_bilinear() -> Figure:
    """A mask shrunk to 70 %: nearest neighbour keeps the labels, bilinear invents new ones on every edge."""
    _, mask = _train_set()[0]
    mask = mask.as_subclass(torch.Tensor)
    size = (int(mask.shape[0] * 0.7), int(mask.shape[1] * 0.7))
    nearest = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    bilinear = F.interpolate(mask[None, None].float(), size=size, mode="bilinear")[0, 0].round().long()
    invented = ~np.isin(bilinear.numpy(), mask.unique().numpy())
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(viz.colorize(nearest), interpolation="nearest")
    axes[0].set_title("nearest: labels of the input only", fontsize=9)
    axes[1].imshow(viz.colorize(bilinear), interpolation="nearest")
    axes[1].set_title("bilinear: in-between values", fontsize=9)
    axes[2].imshow(invented, cmap="Reds", interpolation="nearest")
    axes[2].set_title(f"{int(invented.sum())} pixels with an invented label", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def sliding_windows() -> Figure:
    """The windows of sliding-window inference on a 375 x 500 VOC-sized image, window 321, stride 214
    (segkit.inference.window_starts), and how many windows cover each pixel."""
    height, width, window = 375, 500, 321
    stride = window * 2 // 3
    coverage = np.zeros((height, width), dtype=np.int64)
    figure, ax = plt.subplots(figsize=(6, 4.6))
    colours = plt.cm.tab10.colors
    number = 0
    for top in window_starts(height, window, stride):
        for left in window_starts(width, window, stride):
            coverage[top : top + window, left : left + window] += 1
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), window, window, fill=False, linewidth=2,
                                   edgecolor=colours[number % 10]))  # fmt: skip
            number += 1
    shown = ax.imshow(coverage, cmap="Greys", vmin=0, vmax=coverage.max() + 1)
    figure.colorbar(shown, ax=ax, label="windows covering the pixel", shrink=0.8)
    title = f"{number} windows of {window}x{window}, stride {stride}, on a {width}x{height} image"
    ax.set_title(title, fontsize=9)
    return figure


FIGURES = {
    "s02_augmentations": augmentations,
    "s02_nearest_vs_bilinear": nearest_vs_bilinear,
    "s02_sliding_windows": sliding_windows,
}
