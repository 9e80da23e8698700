"""Softmax focal loss (Lin, Goyal, Girshick, He, Dollár: "Focal Loss for Dense Object Detection",
ICCV 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segkit.data.masks import VOID_INDEX

from .common import check_inputs, divide_or_zero, labelled_pixels


class FocalLoss(nn.Module):
    """Multiclass focal loss on the softmax probability of the true class, mean over labelled pixels.

        FL_i = -alpha_{t_i} * (1 - p_{i, t_i})^gamma * log p_{i, t_i}
        loss = sum_i FL_i / M

    for the M pixels i with label t_i != ignore_index, p = softmax(logits) over the C classes.
    The factor (1 - p_t)^gamma shrinks the loss of pixels that are already well classified
    (p_t close to 1) so that the hard ones dominate. `alpha` is an optional (C,) per-class weight
    (alpha_t = 1 when None). The mean is a plain mean over labelled pixels, NOT divided by the sum of
    alpha_t: with gamma = 0 and alpha = None it equals `F.cross_entropy(..., ignore_index=255)`, but
    with gamma = 0 and alpha = w it is sum_i w_{t_i} CE_i / M, whereas `F.cross_entropy(weight=w)`
    divides by sum_i w_{t_i}.

    Not the same as smp's `FocalLoss(mode="multiclass")`: smp treats each class as a separate
    one-vs-rest binary problem with a sigmoid on every logit and sums the binary focal terms over the
    classes; here there is one softmax over the classes and one term per pixel, as in the paper.

    Void pixels are left out (exactly zero gradient); a batch with no labelled pixel gives 0.
    Numerical note: (1 - p_t) is clamped to >= 1e-12 before the power so that gamma < 1 has a finite
    gradient at p_t = 1; the value is unchanged (log p_t = 0 there).

    Args:
        gamma: focusing parameter >= 0 (paper: 2).
        alpha: optional per-class weights (C,), e.g. `inverse_frequency_weights(...)`.
        ignore_index: label of void pixels.

    Shapes: logits (N, C, H, W) float, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int = VOID_INDEX):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        if alpha is None:
            self.alpha = None
        else:
            weights = torch.as_tensor(alpha, dtype=torch.float32)
            if weights.dim() != 1 or bool((weights < 0).any()):
                raise ValueError(f"FocalLoss: alpha must be a 1-D list of non-negative per-class weights, "
                                 f"got {alpha!r}")
            self.register_buffer("alpha", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = check_inputs(logits, target, self.ignore_index, "FocalLoss")
        scores, labels = labelled_pixels(logits, target, self.ignore_index)  # (M, C), (M,)
        log_p_true = F.log_softmax(scores, dim=1).gather(1, labels[:, None]).squeeze(1)  # (M,)
        p_true = log_p_true.exp()
        focal = -((1.0 - p_true).clamp_min(1e-12) ** self.gamma) * log_p_true
        if self.alpha is not None:
            if self.alpha.numel() != logits.shape[1]:
                raise ValueError(f"FocalLoss: {self.alpha.numel()} alpha values for "
                                 f"{logits.shape[1]} classes")
            focal = focal * self.alpha.to(device=focal.device, dtype=focal.dtype)[labels]
        count = torch.tensor(float(labels.numel()), device=logits.device, dtype=focal.dtype)
        return divide_or_zero(focal.sum(), count)
