"""Figures of lecture 01 (semantic segmentation and VOC-2012), made from the shapes dataset with segkit.

    python lectures/make_figures.py --only s01

The shapes set (data/shapes, generated with its default seed when missing) stands in for VOC, which cannot
be shipped: same layout, same class indices and palette, a void band along boundaries.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from segkit import paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOC_CLASSES, VOC_PALETTE, VOCSegmentation, dataset_stats


def _train_set() -> VOCSegmentation:
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    return VOCSegmentation(root, "train")


def sample_masks() -> Figure:
    """Three training images: the image, its mask in VOC colours (void cream), the overlay."""
    dataset = _train_set()
    figure, axes = plt.subplots(3, 3, figsize=(6, 6.4))
    present = set()
    for row, index in enumerate((0, 4, 7)):
        image, mask = dataset[index]
        present |= set(mask.unique().tolist())
        pictures = (viz.image_to_uint8(image), viz.colorize(mask), viz.overlay(image, mask))
        for column, picture in enumerate(pictures):
            axes[row, column].imshow(picture, interpolation="nearest")
            axes[row, column].set_axis_off()
    for column, title in enumerate(("image", "mask (VOC palette)", "overlay")):
        axes[0, column].set_title(title, fontsize=10)
    figure.legend(handles=viz.legend_patches(sorted(present)), loc="lower center", ncol=4, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def void_pitfall() -> Figure:
    """A mask read as indices vs the same mask converted to RGB and mapped back with a table that only knows
    the 21 class colours: the void border becomes background."""
    dataset = _train_set()
    path = dataset.mask_path(0)
    with Image.open(path) as file:
        indices = np.asarray(file)
        rgb = np.asarray(file.convert("RGB")).astype(np.int64)
    table = np.zeros(256**3, dtype=np.uint8)
    for index in range(len(VOC_CLASSES)):
        red, green, blue = VOC_PALETTE[index]
        table[(red * 256 + green) * 256 + blue] = index
    via_rgb = table[(rgb[..., 0] * 256 + rgb[..., 1]) * 256 + rgb[..., 2]]
    lost = (indices == 255) & (via_rgb == 0)
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(viz.colorize(indices), interpolation="nearest")
    axes[0].set_title("np.asarray(Image.open(p)): void kept", fontsize=9)
    axes[1].imshow(viz.colorize(via_rgb), interpolation="nearest")
    axes[1].set_title(".convert('RGB') + colour table: void lost", fontsize=9)
    axes[2].imshow(lost, cmap="Reds", interpolation="nearest")
    axes[2].set_title(f"{int(lost.sum())} void pixels now 'background'", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def class_statistics() -> Figure:
    """Pixel share (log scale) and share of images per class, from segkit.data.dataset_stats."""
    stats = dataset_stats(_train_set())
    present = np.flatnonzero(stats.pixel_counts)
    names = [VOC_CLASSES[i] for i in present]
    colours = [np.asarray(VOC_PALETTE[i]) / 255 for i in present]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].bar(names, 100 * stats.frequencies[present], color=colours, edgecolor="grey")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("% of labelled pixels (log)")
    axes[0].set_title("pixel frequency", fontsize=10)
    axes[1].bar(names, 100 * stats.image_counts[present] / stats.num_images, color=colours, edgecolor="grey")
    axes[1].set_ylabel("% of images")
    axes[1].set_title("images containing the class", fontsize=10)
    for ax in axes:
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    figure.suptitle(f"shapes train split: {stats.num_images} images", fontsize=10)
    figure.tight_layout()
    return figure


FIGURES = {
    "s01_sample_masks": sample_masks,
    "s01_void_pitfall": void_pitfall,
    "s01_class_statistics": class_statistics,
}
