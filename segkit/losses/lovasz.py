"""Lovász-softmax loss (Berman, Rannen Triki, Blaschko: "The Lovász-Softmax loss: a tractable surrogate
for the optimization of the intersection-over-union measure in neural networks", CVPR 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from segkit.data.masks import VOID_INDEX

from .common import check_inputs, labelled_pixels


def lovasz_gradient(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted in decreasing order.

    `fg_sorted` (P,) float holds 1 for foreground pixels, in the order of decreasing error. With
    G = number of foreground pixels, after the first k pixels (k = 1..P):
        J_k = 1 - (G - fg_1..k) / (G + bg_1..k)          (fg_1..k, bg_1..k = counts among the first k)
    and the result is g_1 = J_1, g_k = J_k - J_{k-1} (Algorithm 1 of the paper).
    """
    total_fg = fg_sorted.sum()
    intersection = total_fg - fg_sorted.cumsum(0)
    union = total_fg + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax_flat(probs: torch.Tensor, labels: torch.Tensor, classes) -> torch.Tensor:
    """Lovász-softmax over a flat list of labelled pixels: probs (M, C) float, labels (M,) int64.

    For each class c: errors e_i = |[labels_i == c] - probs_{i,c}|, sorted decreasingly, and
        loss_c = sum_k e_(k) * g_k          (g = `lovasz_gradient` of the sorted foreground indicator)
    then the mean over the selected classes: "present" = classes with at least one pixel here,
    "all" = every class, or an explicit list. No selected class (or M = 0) gives 0.
    """
    num_classes = probs.shape[1]
    if classes == "present":
        selected = torch.unique(labels).tolist()
    elif classes == "all":
        selected = list(range(num_classes))
    else:
        selected = list(classes)
    if probs.shape[0] == 0 or not selected:
        return probs.sum() * 0.0
    per_class = []
    for c in selected:
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        per_class.append(torch.dot(errors_sorted, lovasz_gradient(fg[order])))
    return torch.stack(per_class).mean()


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax: a convex surrogate of 1 - IoU, optimised directly, per class then averaged.

        p = softmax(logits); for class c, e_i = |y_{i,c} - p_{i,c}| over labelled pixels i
        loss_c = <sort_desc(e), lovasz_gradient(y_c in that order)>
        loss = mean over the selected classes (`classes`: "present" (default), "all", or a list)

    per_image=False pools all labelled pixels of the batch (one IoU over the batch, like the VOC
    metric). per_image=True computes the loss per image and averages over the images that have at
    least one labelled pixel. Void pixels are removed before sorting (exactly zero gradient); an
    all-void batch gives 0. Matches smp 0.6.0 `LovaszLoss(mode="multiclass", per_image=...,
    ignore_index=255)`, which uses classes="present".

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, classes: str | Sequence[int] = "present", per_image: bool = False,
                 ignore_index: int = VOID_INDEX):
        super().__init__()
        if isinstance(classes, str):
            if classes not in ("present", "all"):
                raise ValueError(f"LovaszSoftmaxLoss: classes must be 'present', 'all' or a list of class "
                                 f"indices, got {classes!r}")
        else:
            classes = [int(c) for c in classes]
            if not classes or min(classes) < 0:
                raise ValueError(f"LovaszSoftmaxLoss: classes must be a non-empty list of class indices, "
                                 f"got {classes!r}")
        self.classes, self.per_image, self.ignore_index = classes, per_image, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "LovaszSoftmaxLoss")
        if not isinstance(self.classes, str) and max(self.classes) >= logits.shape[1]:
            raise ValueError(f"LovaszSoftmaxLoss: classes {self.classes} include an index >= number of "
                             f"classes {logits.shape[1]}")
        probs = logits.softmax(dim=1)
        if not self.per_image:
            return lovasz_softmax_flat(*labelled_pixels(probs, target, self.ignore_index), self.classes)
        losses = []
        for image_probs, image_target in zip(probs, target, strict=True):
            flat_probs, labels = labelled_pixels(image_probs[None], image_target[None], self.ignore_index)
            if labels.numel() > 0:
                losses.append(lovasz_softmax_flat(flat_probs, labels, self.classes))
        if not losses:
            return logits.sum() * 0.0
        return torch.stack(losses).mean()
