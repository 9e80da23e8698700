"""Dataset statistics: how many pixels and images each class has, and how big the images are.

Why look: VOC is dominated by background (about 70 % of the labelled pixels), some classes appear in
few images, and the image sizes decide the crop size. These numbers explain why pixel accuracy is a
misleading score and why mean IoU (or a class-weighted loss) is used instead.

Definitions (over one split, all images together):
    pixel_counts[c]   number of pixels labelled c (void, 255, is counted separately in void_pixels)
    frequency[c]      pixel_counts[c] / sum over classes of pixel_counts   (void excluded)
    image_counts[c]   number of images that contain at least one pixel of class c
    image_pixel_counts[c]  labelled pixels of the images that contain class c (the denominator of
                      median-frequency balancing: segkit.losses.median_frequency_weights)
    image_sizes       (width, height) -> number of images of that size

Masks are read directly as class indices (read_mask); images are never decoded: Pillow reads the size from
the file header.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from segkit.data.masks import VOID_INDEX, read_mask


@dataclass
class DatasetStats:
    """Per-class pixel and image counts and the image-size distribution of one dataset split."""

    description: str
    class_names: tuple[str, ...]
    num_images: int
    pixel_counts: np.ndarray  # (C,) int64
    image_counts: np.ndarray  # (C,) int64
    void_pixels: int
    image_pixel_counts: np.ndarray  # (C,) int64
    image_sizes: Counter = field(default_factory=Counter)  # (width, height) -> number of images

    @property
    def labelled_pixels(self) -> int:
        return int(self.pixel_counts.sum())

    @property
    def total_pixels(self) -> int:
        return self.labelled_pixels + self.void_pixels

    @property
    def frequencies(self) -> np.ndarray:
        """(C,) float64: share of the labelled (non-void) pixels that belong to each class."""
        return self.pixel_counts / max(self.labelled_pixels, 1)

    def table(self) -> str:
        """A printable table: one row per class that occurs, then void, then the image sizes."""
        lines = [
            f"{self.description}: {self.num_images} images, {self.total_pixels:,} pixels",
            f"{'class':<18}{'pixels':>14}{'% labelled':>12}{'images':>9}{'% images':>10}",
        ]
        absent = []
        for index, name in enumerate(self.class_names):
            if self.pixel_counts[index] == 0:
                absent.append(name)
                continue
            lines.append(
                f"{index:>3} {name:<14}{self.pixel_counts[index]:>14,}{100 * self.frequencies[index]:>12.2f}"
                f"{self.image_counts[index]:>9}{100 * self.image_counts[index] / self.num_images:>10.1f}"
            )
        void_share = 100 * self.void_pixels / max(self.total_pixels, 1)
        lines.append(f"{'255 void':<18}{self.void_pixels:>14,}{'':>12}   ({void_share:.2f} % of all pixels)")
        if absent:
            lines.append(f"classes with no pixels ({len(absent)}): {', '.join(absent)}")
        lines.append("image sizes (width x height): " + ", ".join(
            f"{w}x{h}: {n}" for (w, h), n in self.image_sizes.most_common(5)
        ) + (f", ... ({len(self.image_sizes)} sizes)" if len(self.image_sizes) > 5 else ""))  # fmt: skip
        if self.image_sizes:
            widths = np.array([w for (w, _), n in self.image_sizes.items() for _ in range(n)])
            heights = np.array([h for (_, h), n in self.image_sizes.items() for _ in range(n)])
            lines.append(
                f"width min/mean/max {widths.min()}/{widths.mean():.0f}/{widths.max()}, "
                f"height min/mean/max {heights.min()}/{heights.mean():.0f}/{heights.max()}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def dataset_stats(dataset_or_root, split: str = "train") -> DatasetStats:
    """Count classes and image sizes of a dataset split.

    dataset_or_root: a dataset with `classes`, `__len__`, `image_path(i)` and `mask_path(i)`
        (VOCSegmentation, FolderDataset), or a path in the VOC layout, read as VOCSegmentation(root, split).
    split: used only when a path is given.
    Raises ValueError naming the file when a mask holds a value that is neither a class index nor 255,
    or when a mask and its image differ in size.
    """
    if isinstance(dataset_or_root, (str, os.PathLike)):
        from segkit.data.voc import VOCSegmentation

        dataset = VOCSegmentation(Path(dataset_or_root), split=split)
    else:
        dataset = dataset_or_root
    if getattr(dataset, "has_masks", True) is False:
        raise ValueError(f"{dataset!r} has no masks: statistics need the labels of the split")
    num_classes = len(dataset.classes)
    counts = np.zeros(256, dtype=np.int64)
    image_counts = np.zeros(256, dtype=np.int64)
    image_pixel_counts = np.zeros(256, dtype=np.int64)
    sizes: Counter = Counter()
    for index in range(len(dataset)):
        mask_path = dataset.mask_path(index)
        mask = read_mask(mask_path)
        per_value = np.bincount(mask.ravel(), minlength=256)
        bad = np.flatnonzero(per_value[num_classes:VOID_INDEX]) + num_classes
        if bad.size:
            raise ValueError(
                f"mask {mask_path} holds value(s) {bad.tolist()}: expected class indices "
                f"0..{num_classes - 1} or {VOID_INDEX} (void)"
            )
        counts += per_value
        image_counts += per_value > 0
        image_pixel_counts += (per_value > 0) * (mask.size - per_value[VOID_INDEX])
        image_path = dataset.image_path(index)
        with Image.open(image_path) as image:  # reads the header only
            width, height = image.size
        if (height, width) != mask.shape:
            raise ValueError(
                f"image {image_path} is {width}x{height} (WxH) but mask {mask_path} is "
                f"{mask.shape[1]}x{mask.shape[0]}"
            )
        sizes[(width, height)] += 1
    split_name = getattr(dataset, "split", None)
    description = f"{type(dataset).__name__} {getattr(dataset, 'root', '')}" + (
        f" split {split_name!r}" if split_name is not None else ""
    )
    return DatasetStats(
        description=description,
        class_names=tuple(dataset.classes),
        num_images=len(dataset),
        pixel_counts=counts[:num_classes].copy(),
        image_counts=image_counts[:num_classes].copy(),
        void_pixels=int(counts[VOID_INDEX]),
        image_pixel_counts=image_pixel_counts[:num_classes].copy(),
        image_sizes=sizes,
    )
