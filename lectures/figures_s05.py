"""Figures of lecture 05 (training): optimizers on a toy valley, segkit's learning-rate schedules, per-group
rates with DeepLab's multipliers, and the curves of a short Trainer run on the shapes dataset.

    python lectures/make_figures.py --only s05
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Subset

from segkit import losses, paths, viz
from segkit.course import ensure_shapes
from segkit.data import VOC_CLASSES, VOCSegmentation, eval_transforms, train_transforms
from segkit.models import build_model
from segkit.optim import build_optimizer, build_scheduler, lr_curve, scheduler_factory
from segkit.trainer import Trainer

SCALES = torch.tensor([1.0, 50.0])  # f(x, y) = (x^2 + 50 y^2) / 2
START = torch.tensor([-4.0, 1.0])


def _valley(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * (SCALES * theta**2).sum()


def optimizers() -> Figure:
    """40 steps of SGD, SGD with momentum and Adam on an ill-conditioned quadratic."""
    runs = {
        "SGD, lr 0.035": lambda p: torch.optim.SGD(p, lr=0.035),
        "SGD + momentum 0.9, lr 0.01": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
        "Adam, lr 0.5": lambda p: torch.optim.Adam(p, lr=0.5),
    }
    xs, ys = np.meshgrid(np.linspace(-4.5, 1.5, 200), np.linspace(-1.5, 1.5, 200))
    figure, ax = plt.subplots(figsize=(8, 4))
    ax.contour(xs, ys, 0.5 * (xs**2 + 50 * ys**2), levels=20, colors="lightgrey", linewidths=0.7)
    for label, make in runs.items():
        theta = START.clone().requires_grad_(True)
        optimizer = make([theta])
        points = [theta.detach().clone()]
        for _ in range(40):
            optimizer.zero_grad()
            _valley(theta).backward()
            optimizer.step()
            points.append(theta.detach().clone())
        path = torch.stack(points)
        ax.plot(path[:, 0], path[:, 1], "o-", markersize=2.5, linewidth=1,
                label=f"{label}: f = {_valley(path[-1]):.1e} after 40 steps")
    ax.plot(0, 0, "k*", markersize=10)
    ax.legend(fontsize=8)
    ax.set_title("40 steps on f(x, y) = (x² + 50 y²) / 2 (SGD diverges above lr = 2/50)")
    figure.tight_layout()
    return figure


def schedules() -> Figure:
    """segkit.optim.lr_curve for poly (with and without slow start), warmup + poly and cosine."""
    base, total = 0.01, 200
    figure, ax = plt.subplots(figsize=(8, 3.6))
    viz.plot_lr_curve(lr_curve("poly", base, total), ax=ax, label="poly (power 0.9)")
    viz.plot_lr_curve(lr_curve("poly", base, total, slow_start_steps=30, slow_start_lr=1e-3), ax=ax,
                      label="poly, constant slow start (30 steps at 1e-3)")
    viz.plot_lr_curve(lr_curve("warmup_poly", base, total, warmup_steps=30, start_factor=0.1), ax=ax,
                      label="linear warmup from 0.1 x base, then poly")
    viz.plot_lr_curve(lr_curve("cosine", base, total), ax=ax, label="cosine")
    ax.set_title("learning-rate schedules, stepped once per iteration (base 0.01, 200 iterations)")
    figure.tight_layout()
    return figure


def group_rates() -> Figure:
    """The rate of each parameter group of a DeepLabV3 (ResNet-18) with DeepLab's multipliers, under poly
    with a slow start: every group follows the same curve, scaled by its multiplier."""
    model = build_model("deeplabv3", num_classes=len(VOC_CLASSES), backbone="resnet18")
    optimizer = build_optimizer(model, "sgd", lr=0.01, bias_lr_mult=2, last_layer_lr_mult=10)
    scheduler = build_scheduler(optimizer, "poly", total_steps=100, slow_start_steps=10, slow_start_lr=1e-3)
    rates = {group["name"]: [] for group in optimizer.param_groups}
    for _ in range(100):
        for group in optimizer.param_groups:
            rates[group["name"]].append(group["lr"])
        optimizer.step()  # no gradients: nothing moves
        scheduler.step()
    figure, ax = plt.subplots(figsize=(8, 3.6))
    for name in ("backbone.weight", "head.weight", "last_layer.weight", "last_layer.bias"):
        viz.plot_lr_curve(rates[name], ax=ax, label=f"{name} (lr_mult {_mult(optimizer, name):g})")
    ax.set_yscale("log")
    ax.set_title("DeepLab's multipliers: biases x2, last layer x10 (DeepLabV3, ResNet-18)")
    figure.tight_layout()
    return figure


def _mult(optimizer: torch.optim.Optimizer, name: str) -> float:
    return next(group["lr_mult"] for group in optimizer.param_groups if group["name"] == name)


def training_curves() -> Figure:
    """metrics.csv of a short Trainer run: a small UNet on the shapes dataset, 8 epochs of 10 batches."""
    root, _ = ensure_shapes(paths.data_root() / "shapes")
    augment = train_transforms(96, scale_range=(0.75, 1.25), base_size=128, vflip=True)
    train_set = VOCSegmentation(root, "train", transforms=augment)
    val_set = Subset(VOCSegmentation(root, "val", transforms=eval_transforms()), range(32))
    torch.manual_seed(0)
    model = build_model("unet", num_classes=len(VOC_CLASSES), base_channels=16, depth=3)
    optimizer = build_optimizer(model, "adamw", lr=3e-3, weight_decay=1e-4)
    with tempfile.TemporaryDirectory() as folder:
        train_loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True)
        trainer = Trainer(model, losses.CrossEntropyLoss(), optimizer, train_loader,
                          DataLoader(val_set, batch_size=16), num_classes=len(VOC_CLASSES),
                          class_names=VOC_CLASSES, run_dir=Path(folder) / "run", epochs=8, limit_batches=10,
                          device="cpu", progress_bar=False, print_table=False, tensorboard=False,
                          keep_last_k=0, make_scheduler=scheduler_factory("poly"))
        trainer.fit()
        figure = viz.plot_training_curves(Path(folder) / "run", keys=("train_loss", "val_loss", "miou", "lr"))
    figure.suptitle("Trainer on shapes: UNet (16 channels), 8 epochs x 10 steps, AdamW 3e-3, poly",
                    y=1.06)
    return figure


FIGURES = {
    "s05_optimizers": optimizers,
    "s05_schedules": schedules,
    "s05_group_rates": group_rates,
    "s05_training_curves": training_curves,
}
