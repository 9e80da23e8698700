"""Pixel-wise cross-entropy, optionally class-weighted, and two ways to compute class weights.

Cross-entropy for one labelled pixel with true class t and softmax probabilities p:
    CE = -log p_t
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.data.masks import VOID_INDEX

from .common import check_inputs, divide_or_zero


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy averaged over the labelled pixels of the batch.

        loss = sum_i w_{t_i} * (-log p_{i, t_i}) / sum_i w_{t_i}

    over pixels i whose label t_i != ignore_index; w = `class_weights` (all 1 when None, then the
    denominator is simply the number of labelled pixels). This is exactly
    `F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index)` — note that
    with weights PyTorch divides by the sum of the weights, so scaling all weights by a constant does
    not change the loss. Void pixels contribute nothing and get zero gradient. A batch with no
    labelled pixel gives 0 (PyTorch would give NaN).

    Args:
        class_weights: optional (C,) per-class weights, e.g. from `inverse_frequency_weights` or
            `median_frequency_weights`.
        ignore_index: label of void pixels (255 on VOC).

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, class_weights: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int = VOID_INDEX):
        super().__init__()
        self.ignore_index = ignore_index
        if class_weights is None:
            self.class_weights = None
        else:
            weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if weights.dim() != 1 or bool((weights < 0).any()):
                raise ValueError(f"CrossEntropyLoss: class_weights must be a 1-D list of non-negative "
                                 f"numbers, got {class_weights!r}")
            self.register_buffer("class_weights", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "CrossEntropyLoss")
        weight = self.class_weights
        if weight is not None:
            if weight.numel() != logits.shape[1]:
                raise ValueError(f"CrossEntropyLoss: {weight.numel()} class_weights for {logits.shape[1]} "
                                 f"classes in the logits")
            weight = weight.to(device=logits.device, dtype=logits.dtype)
        total = F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index,
                                reduction="sum")
        valid = target != self.ignore_index
        if weight is None:
            denominator = valid.sum().to(total.dtype)
        else:
            denominator = (weight[target.masked_fill(~valid, 0)] * valid).sum()
        return divide_or_zero(total, denominator)


def _as_counts(values, argument: str) -> torch.Tensor:
    counts = torch.as_tensor(values, dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"{argument} must be a 1-D sequence with one count per class, got shape "
                         f"{tuple(counts.shape)}")
    if bool((counts < 0).any()) or not bool(torch.isfinite(counts).all()):
        raise ValueError(f"{argument} must hold finite non-negative counts, got {counts.tolist()}")
    return counts


def inverse_frequency_weights(pixel_counts) -> torch.Tensor:
    """Class weights inversely proportional to class frequency, normalised to mean 1.

        freq_c = n_c / sum_k n_k          (n_c = labelled pixels of class c in the training set)
        w_c    = (1 / freq_c) / mean_{k present}(1 / freq_k)

    so the weights of the classes present in the data average to 1. Classes with n_c = 0 (absent from
    the data) get weight 0: they never occur as a target, so their weight is never used, and 0
    avoids dividing by zero. With CrossEntropyLoss the normalisation does not matter (it divides by the
    sum of the weights); it matters when the weights are used as focal `alpha`.

    Args:
        pixel_counts: (C,) number of pixels of each class, void excluded (tensor, array or list).
    Returns:
        (C,) float32 tensor.
    """
    counts = _as_counts(pixel_counts, "pixel_counts")
    present = counts > 0
    if not bool(present.any()):
        raise ValueError("pixel_counts are all zero: no class is present, cannot compute weights")
    inverse = torch.zeros_like(counts)
    inverse[present] = counts.sum() / counts[present]
    return (inverse / inverse[present].mean()).float()


def median_frequency_weights(pixel_counts, image_pixel_counts) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus, ICCV 2015, "Predicting depth, surface normals and
    semantic labels with a common multi-scale convolutional architecture"; also used by SegNet).

        freq_c = n_c / m_c                 (m_c = total pixels of the images in which class c appears)
        w_c    = median_{k present}(freq_k) / freq_c

    This is the paper's definition of freq_c, not the plain share n_c / sum_k n_k. The median is taken
    over the classes present in the data; with an even number of them it is the mean of the two middle
    values (as numpy.median). Classes with n_c = 0 get weight 0 (see `inverse_frequency_weights`).
    Count labelled pixels only (void excluded) in both arguments, consistently.

    Args:
        pixel_counts: (C,) n_c, the number of pixels of class c.
        image_pixel_counts: (C,) m_c, the sum of the pixel counts of the images containing class c;
            m_c >= n_c, and m_c > 0 wherever n_c > 0.
    Returns:
        (C,) float32 tensor. With an odd number of present classes the median class gets weight 1;
        with an even number the two middle classes get weights on either side of 1.
    """
    counts = _as_counts(pixel_counts, "pixel_counts")
    image_counts = _as_counts(image_pixel_counts, "image_pixel_counts")
    if counts.shape != image_counts.shape:
        raise ValueError(f"pixel_counts has {counts.numel()} classes but image_pixel_counts has "
                         f"{image_counts.numel()}")
    present = counts > 0
    if not bool(present.any()):
        raise ValueError("pixel_counts are all zero: no class is present, cannot compute weights")
    if bool((image_counts < counts).any()):
        bad = torch.nonzero(image_counts < counts).flatten().tolist()
        raise ValueError(f"image_pixel_counts must be >= pixel_counts for every class (the images containing "
                         f"class c hold at least its pixels); classes {bad} violate this")
    freq = torch.zeros_like(counts)
    freq[present] = counts[present] / image_counts[present]
    median = torch.quantile(freq[present], 0.5)  # linear interpolation = mean of the two middle values
    weights = torch.zeros_like(counts)
    weights[present] = median / freq[present]
    return weights.float()
