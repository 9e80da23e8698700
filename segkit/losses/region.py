"""Soft Dice and soft Jaccard (IoU) losses: region overlap measured on softmax probabilities.

Both match segmentation_models_pytorch 0.6.0 `DiceLoss` / `JaccardLoss` with `mode="multiclass"`,
`from_logits=True` and the same `smooth`, `eps`, `classes`, `log_loss` and `ignore_index`.

Per class c, summing over the whole batch and all labelled pixels i (void pixels are dropped from both
the prediction and the target):
    I_c = sum_i p_{i,c} * y_{i,c}     (soft intersection; y is the one-hot target)
    P_c = sum_i p_{i,c}               (soft predicted area)
    T_c = sum_i y_{i,c}               (true area, a pixel count)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.data.masks import VOID_INDEX

from .common import check_inputs


def soft_region_sums(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Per-class (I, P, T) as defined in the module docstring, each a (C,) float tensor.

    Void pixels have their probabilities and their one-hot row set to 0, so they count nowhere and
    their logits get exactly zero gradient.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)  # (N, 1, H, W)
    probs = logits.log_softmax(dim=1).exp() * valid  # (N, C, H, W)
    one_hot = F.one_hot(target.masked_fill(~valid[:, 0], 0), num_classes).permute(0, 3, 1, 2)
    one_hot = (one_hot * valid).to(probs.dtype)  # (N, C, H, W)
    dims = (0, 2, 3)
    return (probs * one_hot).sum(dims), probs.sum(dims), one_hot.sum(dims)


def _reduce_per_class(score, true_area, classes, log_loss, eps, loss_name):
    """Turn per-class scores (C,) into the loss: 1 - score (or -log score), 0 for classes without any
    true pixel in the batch, restricted to `classes`, then the plain mean over the (kept) classes."""
    loss = -torch.log(score.clamp_min(eps)) if log_loss else 1.0 - score
    loss = loss * (true_area > 0).to(loss.dtype)
    if classes is not None:
        if max(classes) >= score.numel():
            raise ValueError(f"{loss_name}: classes {list(classes)} include an index >= number of classes "
                             f"{score.numel()}")
        loss = loss[list(classes)]
    return loss.mean()


def _check_options(classes, smooth, eps, loss_name):
    if classes is not None and (len(classes) == 0 or min(classes) < 0):
        raise ValueError(f"{loss_name}: classes must be a non-empty list of class indices, got {classes!r}")
    if smooth < 0 or eps <= 0:
        raise ValueError(f"{loss_name}: need smooth >= 0 and eps > 0, got smooth={smooth}, eps={eps}")


class DiceLoss(nn.Module):
    """Soft Dice loss (Milletari et al., "V-Net", 3DV 2016), multiclass, ignore-aware.

        score_c = (I_c + s) / max((P_c + T_c) / 2 + s, eps)   ( = (2 I_c + 2s) / (P_c + T_c + 2s) )
        loss_c  = 1 - score_c        (or -log(max(score_c, eps)) with log_loss=True)
        loss_c  = 0 when T_c = 0     (class c has no labelled pixel in the batch)
        loss    = mean of loss_c over all C classes (or over `classes`)

    with s = `smooth`. A class absent from the batch's labels gives 0 but still counts in the mean, so
    the value depends on how many classes are present — this is smp's convention, kept for
    comparability. The formula is smp 0.6.0's (its Tversky form with alpha = beta = 1/2); older smp
    versions computed (2I + s) / (P + T + s), which agrees only when smooth = 0.
    An all-void batch gives 0 (every class is absent) with zero gradient.

    Args:
        smooth: s >= 0 added to numerator and denominator.
        eps: lower bound of the denominator (and of the score under log_loss).
        classes: optional list of class indices to average over (default: all).
        log_loss: use -log(score) instead of 1 - score.
        ignore_index: label of void pixels.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, smooth: float = 0.0, eps: float = 1e-7, classes: Sequence[int] | None = None,
                 log_loss: bool = False, ignore_index: int = VOID_INDEX):
        super().__init__()
        _check_options(classes, smooth, eps, "DiceLoss")
        self.smooth, self.eps, self.log_loss, self.ignore_index = smooth, eps, log_loss, ignore_index
        self.classes = None if classes is None else [int(c) for c in classes]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "DiceLoss")
        intersection, predicted_area, true_area = soft_region_sums(logits, target, self.ignore_index)
        denominator = ((predicted_area + true_area) / 2 + self.smooth).clamp_min(self.eps)
        score = (intersection + self.smooth) / denominator
        return _reduce_per_class(score, true_area, self.classes, self.log_loss, self.eps, "DiceLoss")


class JaccardLoss(nn.Module):
    """Soft Jaccard / IoU loss (Rahman & Wang 2016, "Optimizing intersection-over-union in deep neural
    networks for image segmentation"), multiclass, ignore-aware.

        score_c = (I_c + s) / max(P_c + T_c - I_c + s, eps)
        loss_c  = 1 - score_c        (or -log(max(score_c, eps)) with log_loss=True)
        loss_c  = 0 when T_c = 0, mean over all C classes (or over `classes`) — as in `DiceLoss`.

    Same options, void and absent-class handling as `DiceLoss`; matches smp 0.6.0
    `JaccardLoss(mode="multiclass")`.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, smooth: float = 0.0, eps: float = 1e-7, classes: Sequence[int] | None = None,
                 log_loss: bool = False, ignore_index: int = VOID_INDEX):
        super().__init__()
        _check_options(classes, smooth, eps, "JaccardLoss")
        self.smooth, self.eps, self.log_loss, self.ignore_index = smooth, eps, log_loss, ignore_index
        self.classes = None if classes is None else [int(c) for c in classes]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "JaccardLoss")
        intersection, predicted_area, true_area = soft_region_sums(logits, target, self.ignore_index)
        denominator = (predicted_area + true_area - intersection + self.smooth).clamp_min(self.eps)
        score = (intersection + self.smooth) / denominator
        return _reduce_per_class(score, true_area, self.classes, self.log_loss, self.eps, "JaccardLoss")
