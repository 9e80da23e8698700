"""Pictures for the notebooks and lectures: masks in VOC colours, overlays, error maps, confusion matrices,
per-class bars, learning-rate and training curves.

Arrays in, matplotlib Figures out. Every plotting function returns its Figure, draws into the `ax`/`axes`
you pass (or a new figure), and never calls plt.show(). In a notebook, assign the result
(`fig = show_predictions(...)`) so that the figure is shown once, and call plt.close(fig) in loops.

Colour conventions (the same in every picture of the course):
- classes: the VOC palette (segkit.data.VOC_PALETTE), background black, void (255) cream (224, 224, 192);
- error maps: correct = green, wrong = red, void (not scored) = cream.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from segkit.data.masks import VOC_CLASSES, VOC_PALETTE, VOID_INDEX
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CORRECT_COLOUR = (40, 160, 60)  # green: prediction == target
WRONG_COLOUR = (220, 40, 40)  # red: prediction != target
VOID_COLOUR = VOC_PALETTE[VOID_INDEX]  # cream (224, 224, 192): target is void, the pixel is not scored


def _numpy(values) -> np.ndarray:
    """A NumPy copy-free view of a tensor / array / list."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _mask_array(mask, where: str) -> np.ndarray:
    """(H, W) integer class indices in 0..255 as int64, or a ValueError saying what is wrong."""
    array = _numpy(mask)
    if array.ndim != 2:
        raise ValueError(f"{where}: a mask must be 2-D (H, W), got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: a mask must hold integer class indices, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"{where}: mask values must be in 0..255, found {array.min()}..{array.max()}")
    return array.astype(np.int64)


def colorize(mask, void_colour: tuple[int, int, int] = VOID_COLOUR) -> np.ndarray:
    """Colour a mask with the VOC palette: (H, W) class indices (255 = void) -> (H, W, 3) uint8 RGB.

    Pixel value k gets VOC_PALETTE[k]; void pixels get `void_colour` (default the VOC cream, which no
    class uses).
    """
    indices = _mask_array(mask, "colorize")
    palette = np.asarray(VOC_PALETTE, dtype=np.uint8).copy()
    palette[VOID_INDEX] = void_colour
    return palette[indices]


def image_to_uint8(image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """Any image the course handles -> (H, W, 3) uint8 RGB for display.

    image: (3, H, W) or (H, W, 3), uint8 (shown as is) or float. A float image is taken to be normalised
    with `mean` and `std` (the segkit transforms' output) and turned back: x * std + mean, clipped to
    [0, 1], times 255, rounded. For a float image already in [0, 1] pass mean=(0, 0, 0), std=(1, 1, 1).
    Channels come first when the first axis has length 3 (the torch layout), else last.
    """
    array = _numpy(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"an image must be (3, H, W) or (H, W, 3), got shape {tuple(array.shape)}")
    if array.shape[0] == 3:
        array = array.transpose(1, 2, 0)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"an image must be uint8 or float, got dtype {array.dtype}")
    restored = array.astype(np.float64) * np.asarray(std) + np.asarray(mean)
    return np.rint(np.clip(restored, 0.0, 1.0) * 255).astype(np.uint8)


def overlay(image, mask, alpha: float = 0.5, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """The image with its mask painted over it: (H, W, 3) uint8.

    Background pixels (0) keep the image; every other pixel (void included) is blended with its colour
    from `colorize`:  out = round((1 - alpha) * image + alpha * colour).
    image: see image_to_uint8 (mean, std are used for float images); mask: (H, W) class indices.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    rgb = image_to_uint8(image, mean, std).astype(np.float64)
    indices = _mask_array(mask, "overlay")
    if indices.shape != rgb.shape[:2]:
        raise ValueError(f"overlay: mask shape {indices.shape} differs from image size {rgb.shape[:2]}")
    blended = (1.0 - alpha) * rgb + alpha * colorize(indices).astype(np.float64)
    out = np.where((indices != 0)[..., None], blended, rgb)
    return np.rint(out).astype(np.uint8)


def error_map(pred, target) -> np.ndarray:
    """Where a prediction is right: (H, W, 3) uint8, green = correct, red = wrong, cream = void target.

    pred: (H, W) predicted classes; target: (H, W) true classes, 255 = void (neither right nor wrong:
    losses and metrics skip these pixels).
    """
    pred, target = _mask_array(pred, "error_map(pred)"), _mask_array(target, "error_map(target)")
    if pred.shape != target.shape:
        raise ValueError(f"error_map: pred shape {pred.shape} differs from target shape {target.shape}")
    out = np.empty(target.shape + (3,), dtype=np.uint8)
    out[:] = WRONG_COLOUR
    out[pred == target] = CORRECT_COLOUR
    out[target == VOID_INDEX] = VOID_COLOUR
    return out


def legend_patches(class_ids, class_names=None) -> list[Patch]:
    """Legend entries (coloured squares with names) for these class indices; 255 is called "void".

    Use: ax.legend(handles=legend_patches([0, 15, 255])). class_names: default the VOC names.
    """
    class_names = VOC_CLASSES if class_names is None else class_names
    patches = []
    for index in sorted({int(i) for i in _numpy(class_ids).ravel()}):
        if index == VOID_INDEX:
            name = "void"
        else:
            name = class_names[index] if index < len(class_names) else str(index)
        colour = VOID_COLOUR if index == VOID_INDEX else VOC_PALETTE[index]
        patches.append(Patch(facecolor=np.asarray(colour) / 255, edgecolor="grey", label=name))
    return patches


def _new_axes(ax):
    """(figure, ax): the figure of `ax`, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=(6, 4.5))
    return figure, ax


def show_predictions(images, targets, preds=None, class_names=None, max_rows: int = 4, axes=None) -> Figure:
    """A grid with one row per image: image | ground truth | prediction | error map.

    images: (N, 3, H, W) batch (float normalised or uint8) or a list of images; targets: (N, H, W) masks;
    preds: (N, H, W) predicted classes or None (then only image and ground truth). At most max_rows rows.
    The classes present in the shown masks get a legend (class_names: default the VOC names).
    axes: an existing (rows, columns) array of axes to draw into.
    """
    rows = min(len(images), max_rows)
    columns = 2 if preds is None else 4
    if axes is None:
        figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False)
    else:
        axes = np.asarray(axes).reshape(rows, columns)
        figure = axes[0, 0].figure
    titles = ["image", "ground truth", "prediction", "error map (green ok, red wrong)"]
    present = set()
    for row in range(rows):
        target = _mask_array(targets[row], "show_predictions(targets)")
        pictures = [image_to_uint8(images[row]), colorize(target)]
        present |= set(np.unique(target).tolist())
        if preds is not None:
            pred = _mask_array(preds[row], "show_predictions(preds)")
            pictures += [colorize(pred), error_map(pred, target)]
            present |= set(np.unique(pred).tolist())
        for column, picture in enumerate(pictures):
            axes[row, column].imshow(picture, interpolation="nearest")
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(titles[column], fontsize=9)
    figure.legend(handles=legend_patches(sorted(present), class_names), loc="lower center",
                  ncol=min(len(present), 6), fontsize=8, frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def plot_confusion_matrix(matrix, class_names=None, normalize: str | None = "row", ax=None,
                          only_present: bool = True) -> Figure:  # fmt: skip
    """Heatmap of a (C, C) confusion matrix, rows = true class, columns = predicted class.

    normalize="row": each row divided by its sum, so cell (i, j) is the share of class-i pixels predicted
        as j and the diagonal is each class's recall; a class with no pixels has an empty (NaN) row.
    normalize=None: raw pixel counts.
    only_present: leave out classes that appear neither in the truth nor in the predictions (for the
        shapes dataset, 6 of the 21 VOC classes).
    The plotted values are `ax.images[0].get_array()`.
    """
    class_names = VOC_CLASSES if class_names is None else class_names
    counts = _numpy(matrix).astype(np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C), got shape {counts.shape}")
    if normalize not in ("row", None):
        raise ValueError(f"normalize must be 'row' or None, got {normalize!r}")
    keep = np.arange(len(counts))
    if only_present:
        keep = np.flatnonzero(counts.sum(0) + counts.sum(1) > 0)
    counts = counts[np.ix_(keep, keep)]
    names = [class_names[i] if i < len(class_names) else str(i) for i in keep]
    values = counts
    if normalize == "row":
        totals = counts.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(totals > 0, counts / totals, np.nan)
    figure, ax = _new_axes(ax)
    vmax = 1.0 if normalize == "row" else max(float(np.nanmax(values, initial=0.0)), 1.0)
    shown = ax.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0.0, vmax=vmax)
    figure.colorbar(shown, ax=ax, label="share of the true class" if normalize == "row" else "pixels")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if len(names) <= 10:  # write the numbers in the cells when there is room
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(values[i, j]):
                    text = f"{values[i, j]:.2f}" if normalize == "row" else f"{int(values[i, j])}"
                    colour = "white" if values[i, j] > 0.6 * vmax else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title("confusion matrix" + (" (rows sum to 1)" if normalize == "row" else ""))
    figure.tight_layout()
    return figure


def plot_per_class(values, class_names=None, title: str = "IoU", ax=None, skip_nan: bool = True) -> Figure:
    """Bar chart of one value per class (IoU, precision, recall, ...), with the mean as a dashed line.

    values: (C,) tensor / array / list. skip_nan: leave out classes whose value is NaN (classes absent from
    the data have an undefined IoU). The mean line is the mean over the bars shown.
    """
    class_names = VOC_CLASSES if class_names is None else class_names
    array = _numpy(values).astype(np.float64).ravel()
    if len(array) > len(class_names):
        raise ValueError(f"plot_per_class: {len(array)} values but only {len(class_names)} class names")
    keep = [i for i in range(len(array)) if not (skip_nan and np.isnan(array[i]))]
    figure, ax = _new_axes(ax)
    colours = [np.asarray(VOC_PALETTE[i]) / 255 for i in keep]
    ax.bar(range(len(keep)), array[keep], color=colours, edgecolor="grey")
    ax.set_xticks(range(len(keep)), [class_names[i] for i in keep], rotation=45, ha="right", fontsize=8)
    if keep:
        mean = float(np.nanmean(array[keep]))
        ax.axhline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_ylabel(title)
    ax.set_title(f"{title} per class")
    figure.tight_layout()
    return figure


def plot_lr_curve(lrs, ax=None, label: str | None = None) -> Figure:
    """The learning rate against the optimizer step (e.g. from segkit.optim.lr_curve). Call it again with
    the same `ax` and another `label` to compare schedules."""
    figure, ax = _new_axes(ax)
    array = _numpy(lrs).astype(np.float64).ravel()
    ax.plot(np.arange(len(array)), array, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    if label is not None:
        ax.legend(fontsize=8)
    return figure


def read_metrics_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """The columns of a Trainer's metrics.csv (one row per epoch) as float lists; empty cells become NaN.

    path: the CSV file or the run folder that holds metrics.csv.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file {path}: the Trainer writes run_dir/metrics.csv each epoch")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows yet (it gets one per finished epoch)")
    return {key: [float(row[key]) if row[key] not in ("", None) else float("nan") for row in rows]
            for key in rows[0]}  # fmt: skip


def plot_training_curves(metrics_csv, keys=("train_loss", "miou"), axes=None) -> Figure:
    """One panel per column of metrics.csv (e.g. train_loss, val_loss, miou, lr) against the epoch.

    metrics_csv: a metrics.csv file or run folder; or a list of them, or a dict {label: path}, to compare
    runs (one line each, labelled with the run folder's name or the dict key).
    """
    if isinstance(metrics_csv, dict):
        runs = dict(metrics_csv)
    elif isinstance(metrics_csv, list | tuple):
        runs = {_run_label(path): path for path in metrics_csv}
    else:
        runs = {_run_label(metrics_csv): metrics_csv}
    keys = [keys] if isinstance(keys, str) else list(keys)
    if axes is None:
        figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes)
        figure = axes[0].figure
    for label, path in runs.items():
        columns = read_metrics_csv(path)
        for ax, key in zip(axes, keys, strict=True):
            if key not in columns:
                raise ValueError(f"{path}: no column {key!r}; the columns are {', '.join(columns)}")
            ax.plot(columns["epoch"], columns[key], marker="o", markersize=3, label=label)
    for ax, key in zip(axes, keys, strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        if len(runs) > 1:
            ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _run_label(path) -> str:
    path = Path(path)
    return path.name if path.is_dir() else path.parent.name
