"""Boundary loss (Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed: "Boundary loss for highly
unbalanced segmentation", MIDL 2019 / Medical Image Analysis 2021).

The idea: instead of counting overlapping pixels, weight each predicted probability by how far the
pixel lies from the true boundary, so probability mass placed far outside an object costs a lot and
mass inside it earns a reward. The distance maps come from the labels only, so they are computed once
per batch on the CPU with scipy and carry no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy.ndimage import distance_transform_edt

from segkit.data.masks import VOID_INDEX

from .common import check_inputs, divide_or_zero


def signed_distance_map(mask: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance to the boundary of a binary mask, as in the paper's code.

        phi(q) =  d(q, mask)            for q outside the mask (distance to the nearest mask pixel)
        phi(q) = -(d(q, outside) - 1)   for q inside the mask (distance to the nearest outside pixel,
                                        minus 1, so the mask's own border pixels get 0)
    Distances are between pixel centres, pixel spacing 1 (scipy.ndimage.distance_transform_edt).
    An empty mask, or a mask covering the whole image (no boundary inside it), gives all zeros.

    Args:
        mask: (H, W) bool.
    Returns:
        (H, W) float64.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or mask.all():
        return np.zeros(mask.shape, dtype=np.float64)
    outside = ~mask
    distance_outside = distance_transform_edt(outside)  # > 0 outside: distance to nearest mask pixel
    distance_inside = distance_transform_edt(mask)  # > 0 inside: distance to nearest outside pixel
    return distance_outside * outside - (distance_inside - 1.0) * mask


def class_distance_maps(target: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """phi for every image and every class in `classes`: target (N, H, W) int64 -> (N, K, H, W) float32.

    The mask of class c is "label == c"; every other pixel, void included, is outside it. Classes that
    do not occur in an image get an all-zero map. Computed on the CPU; returned on target's device.
    """
    labels = target.cpu().numpy()
    maps = np.zeros((labels.shape[0], len(classes), *labels.shape[1:]), dtype=np.float32)
    for n, image_labels in enumerate(labels):
        present = set(np.unique(image_labels).tolist())
        for k, c in enumerate(classes):
            if c in present:
                maps[n, k] = signed_distance_map(image_labels == c)
    return torch.from_numpy(maps).to(target.device)


class BoundaryLoss(nn.Module):
    """Kervadec et al.'s boundary loss, multiclass, averaged over classes and labelled pixels.

        s = softmax(logits), phi_c = `signed_distance_map` of class c's ground-truth mask (per image)
        loss = sum_{i labelled} sum_{c in K} s_{i,c} * phi_c(i) / (|labelled pixels| * |K|)

    K = `classes` (default: all classes). Without void this is the paper code's `(probs * dist).mean()`
    over images, classes and pixels. The paper applies it to the foreground classes only (pass
    `classes=[1, ..., C-1]` to do the same) and adds it to a region loss (Dice / GDL) with a weight that
    grows during training: use `WeightedSum` for that. On its own it is not a complete objective: a
    class absent from an image has phi = 0, so predicting it there costs nothing.

    The value is negative when probability mass sits inside the true regions (phi < 0) and it is
    minimal when each class's probability is 1 exactly on the pixels where its phi is negative.

    Void: a void pixel is outside every class's mask when the distance maps are computed (so in VOC the
    object boundary is taken at the inner edge of the void band), and its term is dropped from the sum
    and the count, so its logits get exactly zero gradient. An all-void batch gives 0.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, classes: Sequence[int] | None = None, ignore_index: int = VOID_INDEX):
        super().__init__()
        if classes is not None:
            classes = [int(c) for c in classes]
            if not classes or min(classes) < 0:
                raise ValueError(f"BoundaryLoss: classes must be a non-empty list of class indices, "
                                 f"got {classes!r}")
        self.classes, self.ignore_index = classes, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "BoundaryLoss")
        classes = list(range(logits.shape[1])) if self.classes is None else self.classes
        if max(classes) >= logits.shape[1]:
            raise ValueError(f"BoundaryLoss: classes {classes} include an index >= number of classes "
                             f"{logits.shape[1]}")
        distances = class_distance_maps(target, classes).to(logits.dtype)  # (N, K, H, W)
        valid = (target != self.ignore_index).unsqueeze(1)  # (N, 1, H, W)
        probs = logits.softmax(dim=1)[:, classes]
        total = (probs * distances * valid).sum()
        count = (valid.sum() * len(classes)).to(total.dtype)
        return divide_or_zero(total, count)
