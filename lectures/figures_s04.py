"""Figures of lecture 04 (losses), computed with segkit.losses on the shapes dataset.

    python lectures/make_figures.py --only s04

The predictions come from a stand-in for a half-trained network (the notebook's `blurry_logits`): the
one-hot truth blurred over 15x15 windows, a bonus for background and a little seeded noise, so every loss
sees the same logits and the figures are deterministic.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from scipy.spatial.distance import directed_hausdorff

from segkit import losses, paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOC_CLASSES, VOCSegmentation, dataset_stats, train_transforms

VOID = 255
NUM_CLASSES = len(VOC_CLASSES)


def _batch(count: int = 8):
    """The first `count` shapes validation images: images (N, 3, 128, 128), target (N, 128, 128)."""
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    whole_image = train_transforms(128, scale_range=(1.0, 1.0), hflip=False)  # normalise, no change of size
    dataset = VOCSegmentation(root, "val", transforms=whole_image)
    samples = [dataset[i] for i in range(count)]
    return torch.stack([image for image, _ in samples]), torch.stack([mask for _, mask in samples])


def blurry_logits(target: torch.Tensor, blur: int = 15, confidence: float = 4.0,
                  background_prior: float = 1.5, noise: float = 0.3, seed: int = 0) -> torch.Tensor:
    """Logits (N, C, H, W) of the stand-in network (see the module docstring)."""
    one_hot = F.one_hot(target.masked_fill(target == VOID, 0), NUM_CLASSES).permute(0, 3, 1, 2).float()
    smooth = F.avg_pool2d(one_hot, blur, stride=1, padding=blur // 2, count_include_pad=False)
    logits = confidence * smooth
    logits[:, 0] += background_prior
    generator = torch.Generator().manual_seed(seed)
    return logits + noise * torch.randn(logits.shape, generator=generator)


def gradient_map(loss_fn, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|d loss / d logits| per pixel: the norm over classes, (N, H, W)."""
    x = logits.detach().clone().requires_grad_(True)
    loss_fn(x, target).backward()
    return x.grad.norm(dim=1)


def focal_curve() -> Figure:
    """FL(p_t) = -(1 - p_t)^gamma log p_t for several gamma (gamma = 0 is the cross-entropy)."""
    p_t = torch.linspace(0.005, 1.0, 400)
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    for gamma in (0, 0.5, 1, 2, 5):
        ax.plot(p_t, -((1 - p_t) ** gamma) * torch.log(p_t), label=f"gamma = {gamma}")
    ax.set_xlabel("probability of the true class $p_t$")
    ax.set_ylabel("loss of the pixel")
    ax.set_ylim(0, 4)
    ax.axvspan(0.6, 1.0, color="grey", alpha=0.12)
    ax.text(0.8, 3.6, "well classified", ha="center", fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title("focal loss")
    figure.tight_layout()
    return figure


def loss_maps() -> Figure:
    """One image: truth, the stand-in's errors, CE per pixel (log scale), |gradient| of CE and of Dice."""
    images, target = _batch()
    logits = blurry_logits(target)
    pred = logits.argmax(1)
    k = 1
    pixel_ce = F.cross_entropy(logits, target, ignore_index=VOID, reduction="none")
    figure, axes = plt.subplots(1, 5, figsize=(15, 3.3))
    axes[0].imshow(viz.overlay(images[k], target[k]))
    axes[0].set_title("image and truth")
    axes[1].imshow(viz.error_map(pred[k], target[k]))
    axes[1].set_title("stand-in: right / wrong / void")
    masked = np.ma.masked_where(target[k].numpy() == VOID, pixel_ce[k].numpy())
    shown = axes[2].imshow(masked, cmap="magma", norm=LogNorm(vmin=1e-3, vmax=float(pixel_ce.max())))
    key = figure.colorbar(shown, ax=axes[2], fraction=0.046)
    key.set_label("cross-entropy (log scale)", fontsize=8)
    axes[2].set_title("cross-entropy per pixel")
    pairs = [("CE", losses.CrossEntropyLoss()), ("Dice", losses.DiceLoss())]
    for ax, (title, loss_fn) in zip(axes[3:], pairs, strict=True):
        grad = gradient_map(loss_fn, logits, target)[k]
        shown = ax.imshow(grad / grad.max(), cmap="viridis", vmin=0, vmax=1)
        key = figure.colorbar(shown, ax=ax, fraction=0.046)
        key.set_label("|gradient| / its largest value", fontsize=8)
        ax.set_title(f"{title}: |gradient| per pixel")
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def gradient_shares() -> Figure:
    """Share of the gradient norm on each present class, for several losses on the same logits."""
    _, target = _batch()
    logits = blurry_logits(target)
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    stats = dataset_stats(VOCSegmentation(root, "train"))
    median = losses.median_frequency_weights(stats.pixel_counts, stats.image_pixel_counts)
    top_k = losses.TopKCrossEntropyLoss(top_k_percent_pixels=0.25, hard_example_mining_step=0)
    candidates = {
        "CE": losses.CrossEntropyLoss(),
        "median-weighted CE": losses.CrossEntropyLoss(class_weights=median),
        "focal, gamma 2": losses.FocalLoss(gamma=2.0),
        "top-25% CE": top_k,
        "Dice": losses.DiceLoss(),
        "Lovász": losses.LovaszSoftmaxLoss(),
    }
    present = [c for c in range(NUM_CLASSES) if (target == c).any()]
    labelled = target != VOID
    shares = {"pixels": [float((target == c).sum() / labelled.sum()) for c in present]}
    for name, loss_fn in candidates.items():
        per_pixel = gradient_map(loss_fn, logits, target)
        total = per_pixel[labelled].sum()
        shares[name] = [float(per_pixel[target == c].sum() / total) for c in present]
    figure, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(shares)
    for j, (name, values) in enumerate(shares.items()):
        ax.bar(np.arange(len(present)) + j * width, values, width, label=name,
               color="black" if name == "pixels" else None)
    ax.set_xticks(np.arange(len(present)) + 0.4 - width / 2, [VOC_CLASSES[c] for c in present])
    ax.set_ylabel("share")
    ax.set_title("share of the pixels, and of the gradient, per true class (same logits for every loss)")
    ax.legend(ncol=4, fontsize=8)
    figure.tight_layout()
    return figure


def boundary_vs_dice() -> Figure:
    """The signed distance map of an object, and Dice / boundary loss / Hausdorff distance as a prediction of
    the same shape moves away from it."""
    _, target = _batch()
    areas = {c: int((target == c).sum()) for c in range(1, NUM_CLASSES)}
    object_class = max(areas, key=areas.get)  # the object class with the largest area in these images
    image_index = int((target == object_class).flatten(1).sum(1).argmax())
    truth = (target[image_index] == object_class).long()[None]
    phi = losses.signed_distance_map(truth[0].numpy() == 1)
    shifts = list(range(0, 41, 4))
    dice, boundary, hausdorff = [], [], []
    for d in shifts:
        moved = torch.roll(truth, shifts=d, dims=2)
        crisp = torch.stack([1 - moved, moved], 1).float() * 20.0 - 10.0
        dice.append(float(losses.DiceLoss(classes=[1])(crisp, truth)))
        boundary.append(float(losses.BoundaryLoss(classes=[1])(crisp, truth)))
        a, b = np.argwhere(truth[0].numpy() == 1), np.argwhere(moved[0].numpy() == 1)
        hausdorff.append(max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]))
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    limit = float(np.abs(phi).max())
    shown = axes[0].imshow(phi, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0].contour(truth[0], levels=[0.5], colors="black", linewidths=0.8)
    axes[0].set_title(f"signed distance to the {VOC_CLASSES[object_class]} masks")
    axes[0].set_axis_off()
    figure.colorbar(shown, ax=axes[0], fraction=0.046)
    axes[1].plot(shifts, dice, "o-", label="Dice loss")
    axes[1].plot(shifts, np.array(boundary) / max(boundary), "s-", label="boundary loss / its max")
    axes[1].plot(shifts, np.array(hausdorff) / max(hausdorff), "^-", label="Hausdorff distance / its max")
    axes[1].set_xlabel("shift of the predicted mask (pixels)")
    axes[1].set_title("Dice saturates once the masks stop overlapping")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    return figure


def hard_pixels() -> Figure:
    """DeepLab's top-k annealing schedule, and the pixels kept by top-k (25 %) and by OHEM (p_t < 0.7)."""
    _, target = _batch()
    logits = blurry_logits(target)
    top_k = losses.TopKCrossEntropyLoss(top_k_percent_pixels=0.25, hard_example_mining_step=100)
    num_pixels = target.numel()
    steps = np.arange(151)
    kept = []
    for step in steps:
        top_k.set_step(int(step))
        kept.append(top_k.kept_pixels(num_pixels) / num_pixels)
    top_k.set_step(100)
    pixel_ce = F.cross_entropy(logits, target, ignore_index=VOID, reduction="none").flatten()
    chosen = torch.zeros(num_pixels, dtype=torch.bool)
    chosen[pixel_ce.topk(top_k.kept_pixels(num_pixels)).indices] = True
    ohem = losses.OHEMCrossEntropyLoss(thresh=0.7, min_kept=200).hard_pixel_mask(logits, target)
    k = 1
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(steps, kept)
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("share of pixels kept")
    axes[0].set_title("top-k: 100 % -> 25 % over 100 steps")
    axes[1].imshow(chosen.view_as(target)[k].numpy(), cmap="gray")
    axes[1].set_title("top-25 % pixels (white)")
    axes[2].imshow(ohem[k].numpy(), cmap="gray")
    axes[2].set_title("OHEM: p_t < 0.7 (white)")
    for ax in axes[1:]:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


FIGURES = {
    "s04_focal_curve": focal_curve,
    "s04_loss_maps": loss_maps,
    "s04_gradient_shares": gradient_shares,
    "s04_boundary_vs_dice": boundary_vs_dice,
    "s04_hard_pixels": hard_pixels,
}
