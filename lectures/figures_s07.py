"""Figures of lecture 07 (evaluation, visualisation, debugging), made with segkit.

    python lectures/make_figures.py --only s07

A small UNet is trained for 150 steps on the shapes dataset (once, shared by the figures that need a model),
and a DeepLabV3 with a ResNet-18, from random weights, for 150 steps for the feature maps (each well under a
minute on a laptop CPU); everything is seeded.
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
from segkit.data import VOC_CLASSES, VOCSegmentation, eval_transforms, train_transforms
from segkit.hooks import capture_outputs
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


def _fit(model: torch.nn.Module, lr: float, steps: int = 150) -> torch.nn.Module:
    """`model` after `steps` AdamW steps (cross-entropy) on 30 fixed batches of shapes crops, in eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = build_loss("cross_entropy")
    batches = _train_batches(30)
    model.train()
    for step in range(steps):
        images, masks = batches[step % len(batches)]
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@functools.cache
def _trained_model() -> torch.nn.Module:
    """A small UNet after 150 AdamW steps on crops of the shapes training set (about half a minute)."""
    return _fit(_new_model(), lr=1e-2)


@functools.cache
def _trained_deeplab() -> torch.nn.Module:
    """DeepLabV3-ResNet-18 (output stride 16, random initial weights) after 150 AdamW steps on 64x64 crops."""
    torch.manual_seed(0)
    model = build_model("deeplabv3", num_classes=NUM_CLASSES, backbone="resnet18", output_stride=16)
    return _fit(model, lr=1e-3)


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


ASPP_BRANCHES = {"aspp.branch_1x1": "1x1", "aspp.atrous.0": "3x3, rate 6", "aspp.atrous.1": "3x3, rate 12",
                 "aspp.atrous.2": "3x3, rate 18", "aspp.image_pooling": "image pooling"}  # fmt: skip


def selective_channel(maps: torch.Tensor, mask: torch.Tensor, class_index: int) -> int:
    """The channel of `maps` (C, h, w) whose mean over the pixels of `class_index` in `mask` (H, W) exceeds
    its mean over the other non-void pixels the most (the maps are repeated up to (H, W) to compare)."""
    values = F.interpolate(maps[None], size=mask.shape, mode="nearest")[0].flatten(1)  # (C, H*W)
    labels = mask.flatten()
    inside, outside = labels == class_index, (labels != class_index) & (labels != 255)
    return int((values[:, inside].mean(1) - values[:, outside].mean(1)).argmax())


def feature_maps() -> Figure:
    """Captured with segkit.hooks: layer1, layer4 and the five ASPP branches of DeepLabV3 on one image.

    layer1 and layer4: one column per class of the image, its most selective channel (`selective_channel`).
    ASPP: each branch's channel most selective for the largest object; image pooling: its largest channel.
    """
    model = _trained_deeplab()
    val_batches = _val_batches()
    image, mask = val_batches[0][0][2], val_batches[0][1][2]  # a validation image with four object classes
    confusion = ConfusionMatrix(NUM_CLASSES)
    with torch.inference_mode():
        for batch_images, batch_masks in val_batches:
            confusion.update(model(batch_images).argmax(1), batch_masks)
        with capture_outputs(model, ["backbone.layer1", "backbone.layer4", *ASPP_BRANCHES]) as outputs:
            pred = model(image[None]).argmax(1)[0]
    classes = [int(k) for k in mask.unique() if k != 255]  # background first
    largest = max(classes[1:], key=lambda k: int((mask == k).sum()))

    figure, axes = plt.subplots(4, 5, figsize=(11, 9.8))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    pictures = [viz.image_to_uint8(image), viz.colorize(mask), viz.colorize(pred)]
    titles = [f"image {tuple(image.shape)}", "ground truth", "prediction"]
    for ax, picture, title in zip(axes[0, :3], pictures, titles, strict=True):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes[0, 3:]:
        ax.set_axis_off()
    for row, name in ((1, "backbone.layer1"), (2, "backbone.layer4")):
        maps = outputs[name][0]
        for ax, k in zip(axes[row], classes, strict=True):  # one column per class
            channel = selective_channel(maps, mask, k)
            ax.imshow(maps[channel], cmap="viridis", interpolation="nearest")
            ax.set_title(f"channel {channel}: {VOC_CLASSES[k]}", fontsize=8)
        axes[row, 0].set_ylabel(f"{name}\n{tuple(maps.shape)}", fontsize=9)
    brightest = max(float(outputs[name].max()) for name in ASPP_BRANCHES)
    for ax, (name, label) in zip(axes[3], ASPP_BRANCHES.items(), strict=True):
        maps = outputs[name][0]
        if name == "aspp.image_pooling":  # one value per channel: show the largest, on the row's scale
            channel = int(maps[:, 0, 0].argmax())
            ax.imshow(maps[channel], cmap="viridis", interpolation="nearest", vmin=0, vmax=brightest)
            ax.set_title(f"{label}\nchannel {channel}: one value", fontsize=8)
        else:
            channel = selective_channel(maps, mask, largest)
            ax.imshow(maps[channel], cmap="viridis", interpolation="nearest", vmin=0)
            ax.set_title(f"{label}\nchannel {channel}", fontsize=8)
    axes[3, 0].set_ylabel(f"ASPP branches, each\n{tuple(outputs['aspp.branch_1x1'][0].shape)}\n"
                          f"channels for {VOC_CLASSES[largest]}", fontsize=9)  # fmt: skip
    figure.suptitle("DeepLabV3-ResNet-18, output stride 16, random initial weights, 150 AdamW steps on 64x64 "
                    f"shapes crops (validation mIoU {confusion.compute()['miou']:.2f} on 40 images)",
                    fontsize=9)  # fmt: skip
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
    lowest = min(losses)
    ax.axvline(at_minimum, color="grey", linestyle=":",
               label=f"rate at the lowest loss ({lowest:.2f}): lr = {at_minimum:.2g}")
    ax.axvline(at_minimum / 10, color="green", linestyle="--",
               label=f"a tenth of that rate: lr = {at_minimum / 10:.2g}")
    ax.set_xlabel("learning rate (grows by a constant factor per step)")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("learning-rate range test (Smith 2017)", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


FIGURES = {
    "s07_predictions": predictions,
    "s07_confusion_and_iou": confusion_and_iou,
    "s07_feature_maps": feature_maps,
    "s07_loss_at_init": loss_at_init,
    "s07_lr_range_test": lr_range_test,
}
