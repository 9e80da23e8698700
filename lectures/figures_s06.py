"""Figures of lecture 06 (class imbalance and metrics), from segkit.metrics on the shapes validation set.

    python lectures/make_figures.py --only s06

The predictions are made from the ground truth with known mistakes, as in the notebook: all background,
objects shrunk or grown by 4 pixels, small objects dropped, and a nearest-mean-colour classifier.
"""

from __future__ import annotations

import functools
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy import ndimage

from segkit import paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOC_CLASSES, VOCSegmentation
from segkit.metrics import ConfusionMatrix

VOID = 255
C = len(VOC_CLASSES)


def _data(count: int = 100):
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    val_set = VOCSegmentation(root, "val")
    samples = [val_set[i] for i in range(min(count, len(val_set)))]
    images = [image.as_subclass(torch.Tensor) for image, _ in samples]
    masks = [mask.as_subclass(torch.Tensor) for _, mask in samples]
    return root, images, masks


def grow(target: torch.Tensor, radius: int) -> torch.Tensor:
    base = target.masked_fill(target == VOID, 0)
    spread = F.max_pool2d(base[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0].long()
    return torch.where(base == 0, spread, base)


def shrink(target: torch.Tensor, radius: int) -> torch.Tensor:
    out = torch.zeros_like(target)
    for c in target.unique().tolist():
        if c in (0, VOID):
            continue
        inside = ((target == c) | (target == VOID)).float()[None, None]
        kept = -F.max_pool2d(-inside, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0.5
        out[kept & (target == c)] = c
    return out


def drop_small(target: torch.Tensor, min_pixels: int) -> torch.Tensor:
    out = target.masked_fill(target == VOID, 0)
    for c in target.unique().tolist():
        if c in (0, VOID):
            continue
        components, number = ndimage.label((target == c).numpy())
        sizes = np.bincount(components.ravel(), minlength=number + 1)
        out[torch.from_numpy(np.isin(components, np.flatnonzero(sizes < min_pixels)) & (components > 0))] = 0
    return out


def colour_classifier(root, count: int = 40):
    """Nearest mean colour (over `count` training images) per pixel."""
    train_set = VOCSegmentation(root, "train")
    sums, pixels = torch.zeros(C, 3, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    for i in range(count):
        image, mask = (x.as_subclass(torch.Tensor) for x in train_set[i])
        for c in mask.unique().tolist():
            if c != VOID:
                sums[c] += image[:, mask == c].double().sum(1)
                pixels[c] += (mask == c).sum()
    seen = torch.nonzero(pixels).flatten()
    means = sums[seen] / pixels[seen, None]

    def classify(image: torch.Tensor) -> torch.Tensor:
        return seen[((image.double()[None] - means[:, :, None, None]) ** 2).sum(1).argmin(0)]

    return classify


@functools.lru_cache(maxsize=1)
def _predictors():
    """The masks and the five predictors' predictions (made once, shared by the figures)."""
    root, images, masks = _data()
    classify = colour_classifier(root)
    predictors = {
        "all background": [torch.zeros_like(m) for m in masks],
        "shrink 4": [shrink(m, 4) for m in masks],
        "grow 4": [grow(m, 4) for m in masks],
        "drop small (< 300 px)": [drop_small(m, 300) for m in masks],
        "colour classifier": [classify(image) for image in images],
    }
    return masks, predictors


def _metrics(preds, masks) -> dict:
    confusion = ConfusionMatrix(C)
    for pred, target in zip(preds, masks, strict=True):
        confusion.update(pred, target)
    return confusion.compute()


def accuracy_vs_miou() -> Figure:
    """Pixel accuracy and mIoU of each predictor, and the mIoU of the all-background baseline when absent
    classes count as NaN (left out), 0 or 1."""
    masks, predictors = _predictors()
    results = {name: _metrics(preds, masks) for name, preds in predictors.items()}
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    x = np.arange(len(results))
    axes[0].bar(x - 0.2, [r["pixel_accuracy"] for r in results.values()], 0.4, label="pixel accuracy")
    axes[0].bar(x + 0.2, [r["miou"] for r in results.values()], 0.4, label="mIoU (VOC)")
    axes[0].set_xticks(x, [textwrap.fill(name, 14) for name in results], fontsize=8)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, loc="lower right")
    axes[0].set_title("pixel accuracy flatters every predictor")
    iou = results["all background"]["iou"]
    conventions = {"NaN, left out\n(segkit, VOC)": iou.nanmean(), "absent = 0": iou.nan_to_num(0.0).mean(),
                   "absent = 1\n(smp default)": iou.nan_to_num(1.0).mean()}
    axes[1].bar(range(3), [float(v) for v in conventions.values()], color=["tab:orange", "grey", "tab:red"])
    axes[1].set_xticks(range(3), list(conventions), fontsize=8)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("all background, 21 classes: mIoU")
    figure.tight_layout()
    return figure


def precision_recall() -> Figure:
    """IoU, precision and recall per class for objects shrunk and grown by 4 pixels."""
    masks, predictors = _predictors()
    figure, axes = plt.subplots(2, 3, figsize=(12, 5.6), sharey=True)
    for row, name in enumerate(["shrink 4", "grow 4"]):
        metrics = _metrics(predictors[name], masks)
        for column, key in enumerate(["iou", "precision", "recall"]):
            viz.plot_per_class(metrics[key], VOC_CLASSES, title=f"{name}: {key}", ax=axes[row, column])
    figure.tight_layout()
    return figure


def confusion() -> Figure:
    """Row-normalised confusion matrix of the colour classifier."""
    masks, predictors = _predictors()
    matrix = ConfusionMatrix(C)
    for pred, target in zip(predictors["colour classifier"], masks, strict=True):
        matrix.update(pred, target)
    figure, ax = plt.subplots(figsize=(5.6, 4.6))
    viz.plot_confusion_matrix(matrix.matrix, VOC_CLASSES, ax=ax)
    ax.set_title("nearest-colour classifier (rows sum to 1)")
    figure.tight_layout()
    return figure


def per_image() -> Figure:
    """Dataset-level mIoU vs the mean of per-image mIoUs for each predictor, and the per-image scores of
    'drop small' against the size of the smallest object in the image."""
    masks, predictors = _predictors()

    def per_image_scores(preds):
        scores = []
        for pred, target in zip(preds, masks, strict=True):
            matrix = ConfusionMatrix(C)
            matrix.update(pred, target)
            scores.append(matrix.compute()["miou"])
        return np.array(scores)

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(predictors))
    axes[0].bar(x - 0.2, [_metrics(p, masks)["miou"] for p in predictors.values()], 0.4,
                label="one confusion matrix over the dataset (VOC)")
    axes[0].bar(x + 0.2, [np.nanmean(per_image_scores(p)) for p in predictors.values()], 0.4,
                label="mean of per-image mIoU")
    axes[0].set_xticks(x, [textwrap.fill(name, 14) for name in predictors], fontsize=8)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, loc="upper left")
    axes[0].set_title("mIoU: over the dataset or per image")
    smallest = [min([int((m == c).sum()) for c in m.unique().tolist() if c not in (0, VOID)], default=0)
                for m in masks]
    axes[1].scatter(smallest, per_image_scores(predictors["drop small (< 300 px)"]), s=12)
    axes[1].set_xscale("symlog", linthresh=10)
    axes[1].axvline(300, color="grey", linestyle=":")
    axes[1].set_xlabel("pixels of the smallest object class in the image")
    axes[1].set_ylabel("mIoU of the image")
    axes[1].set_title("'drop small (< 300 px)', image by image")
    figure.tight_layout()
    return figure


FIGURES = {
    "s06_accuracy_vs_miou": accuracy_vs_miou,
    "s06_precision_recall": precision_recall,
    "s06_confusion": confusion,
    "s06_per_image": per_image,
}
