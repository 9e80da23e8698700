"""Figures of lecture 07 (evaluation, visualisation, debugging), made with segkit.

    python lectures/make_figures.py --only s07

A small UNet is trained for a few dozen steps on the shapes dataset (once, shared by the figures that need
a model); everything is seeded.
"""

from __future__ import annotations

import functools
import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Subset

from segkit import paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOCSegmentation, eval_transforms, train_transforms
from segkit.losses import build_loss
from segkit.metrics import ConfusionMatrix
from segkit.models import build_model

NUM_CLASSES = 21
CROP = 64


def _root():
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    return root


def _train_batches(count: int) -> list:
    """`count` batches of 8 augmented 64x64 training crops, always the same ones (seeded)."""
    torch.manual_seed(0)
    transforms = train_transforms(CROP, scale_range=(0.75, 1.25), base_size=128)
    dataset = VOCSegmentation(_root(), "train", transforms)
    loader = DataLoader(dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    return list(itertools.islice(loader, count))


def _val_batches() -> list:
    dataset = Subset(VOCSegmentation(_root(), "val", eval_transforms()), range(40))
    return list(DataLoader(dataset, batch_size=8))


def _new_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", num_classes=NUM_CLASSES, base_channels=8, depth=3)


@functools.cache
def _trained_model() -> torch.nn.Module:
    """A small UNet after 150 AdamW steps on crops of the shapes training set (about half a minute)."""
    model = _new_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = build_loss("cross_entropy")
    batches = _train_batches(30)
    model.train()
    for step in range(150):
        images, masks = batches[step % len(batches)]
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@functools.cache
def _val_predictions():
    model = _trained_model()
    images, masks, preds = [], [], []
    with torch.inference_mode():
        for batch_images, batch_masks in _val_batches():
            images += list(batch_images)
            masks += list(batch_masks)
            preds += list(model(batch_images).argmax(1))
    return images, masks, preds


def predictions() -> Figure:
    """Image, ground truth, prediction and error map of three validation images."""
    images, masks, preds = _val_predictions()
    return viz.show_predictions(images[:3], masks[:3], preds[:3], max_rows=3)


def confusion_and_iou() -> Figure:
    """Row-normalised confusion matrix and per-class IoU of the small model on 40 validation images."""
    _, masks, preds = _val_predictions()
    confusion = ConfusionMatrix(NUM_CLASSES)
    confusion.update(torch.stack(preds), torch.stack(masks))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    viz.plot_confusion_matrix(confusion.matrix, ax=axes[0])
    viz.plot_per_class(confusion.compute()["iou"], title="IoU", ax=axes[1])
    figure.tight_layout()
    return figure


def loss_at_init() -> Figure:
    """Cross-entropy of random Gaussian logits (21 classes) against their spread s, next to log C + s^2/2."""
    generator = torch.Generator().manual_seed(0)
    spreads = np.linspace(0.0, 3.0, 31)
    target = torch.randint(0, NUM_CLASSES, (20000,), generator=generator)
    measured = []
    for spread in spreads:
        logits = torch.randn(20000, NUM_CLASSES, generator=generator) * spread
        measured.append(F.cross_entropy(logits, target).item())
    figure, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(spreads, measured, marker="o", markersize=3, label="measured (torch cross_entropy)")
    ax.plot(spreads, math.log(NUM_CLASSES) + spreads**2 / 2, linestyle="--", label=r"$\log C + s^2/2$")
    ax.axhline(math.log(NUM_CLASSES), color="grey", linestyle=":", label=r"$\log C = \log 21$")
    ax.set_xlabel("standard deviation s of the initial logits")
    ax.set_ylabel("loss at initialisation")
    ax.set_title("random logits: the initial loss grows with their spread", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def lr_range_test() -> Figure:
    """Smith's range test on the small UNet: 80 AdamW steps, rate from 1e-5 to 1, smoothed loss."""
    model = _new_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
    loss_fn = build_loss("cross_entropy")
    batches = _train_batches(20)
    steps, low, high, beta = 80, 1e-5, 1.0, 0.8
    rates, losses, average, best = [], [], 0.0, math.inf
    for step in range(steps):
        rate = low * (high / low) ** (step / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = rate
        images, masks = batches[step % len(batches)]
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average = beta * average + (1 - beta) * loss.item()
        smoothed = average / (1 - beta ** (step + 1))
        rates.append(rate)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > 4 * best:
            break
    at_minimum = rates[int(np.argmin(losses))]
    figure, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(rates, losses, marker=".")
    ax.set_xscale("log")
    ax.axvline(at_minimum, color="grey", linestyle=":", label=f"lowest loss ({at_minimum:.2g})")
    ax.axvline(at_minimum / 10, color="green", linestyle="--", label=f"a tenth of it ({at_minimum / 10:.2g})")
    ax.set_xlabel("learning rate (grows by a constant factor per step)")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("learning-rate range test (Smith 2017)", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


FIGURES = {
    "s07_predictions": predictions,
    "s07_confusion_and_iou": confusion_and_iou,
    "s07_loss_at_init": loss_at_init,
    "s07_lr_range_test": lr_range_test,
}
