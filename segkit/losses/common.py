"""Input checks and two small helpers shared by every loss in segkit.losses.

Shapes used throughout the package:
    logits: (N, C, H, W) float — raw scores, before softmax
    target: (N, H, W) int64    — class indices in [0, C), or `ignore_index` (255 on VOC) for void pixels
"""

from __future__ import annotations

import torch


def check_inputs(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                 loss_name: str) -> torch.Tensor:
    """Check that `logits` and `target` fit together and return `target` as int64.

    Raises a TypeError / ValueError naming `loss_name` and the fault when
    - logits is not a floating (N, C, H, W) tensor or target not an integer (N, H, W) tensor,
    - batch size or spatial size differ (lower-resolution logits must go through `MultiScaleLoss`),
    - a label is neither in [0, C) nor `ignore_index`.
    Any integer dtype is accepted for target (uint8 masks are common) and converted to int64.
    The label check costs one device synchronisation; it turns a cryptic CUDA assert into a clear error.
    """
    if isinstance(logits, dict):
        raise TypeError(
            f"{loss_name}: got a dict with keys {sorted(logits)} instead of a logits tensor; a model with "
            f"an auxiliary head returns {{'out', 'aux'}} in training: wrap the loss in AuxLoss "
            f"(spec {{'name': 'aux', 'loss': ...}})"
        )
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"{loss_name}: expected tensors logits (N, C, H, W) and target (N, H, W), "
            f"got {type(logits).__name__} and {type(target).__name__}"
        )
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(
            f"{loss_name}: logits must be a float tensor of shape (N, C, H, W), "
            f"got dtype {logits.dtype} and shape {tuple(logits.shape)}"
        )
    if target.dim() != 3 or target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"{loss_name}: target must be an integer tensor of shape (N, H, W) holding class indices, "
            f"got dtype {target.dtype} and shape {tuple(target.shape)}"
        )
    n, c, h, w = logits.shape
    if target.shape[0] != n or tuple(target.shape[1:]) != (h, w):
        raise ValueError(
            f"{loss_name}: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in batch or "
            f"spatial size; upsample the logits or wrap the loss in MultiScaleLoss to resize the labels"
        )
    target = target.long()
    bad = (target != ignore_index) & ((target < 0) | (target >= c))
    if bool(bad.any()):
        bad_values = torch.unique(target[bad])[:5].tolist()
        raise ValueError(
            f"{loss_name}: target holds labels {bad_values} outside [0, {c}) that are not "
            f"ignore_index={ignore_index}; check num_classes and the void label"
        )
    return target


def divide_or_zero(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """`total / count`, or `total` itself (a zero that keeps its graph) when `count` is 0.

    Used for "mean over non-void pixels": when a batch has no labelled pixel the sum is 0 and the
    loss is 0 with a (zero) gradient instead of 0/0 = NaN. No `if` on a tensor: no device sync.
    """
    return total / torch.where(count > 0, count, torch.ones_like(count))


def labelled_pixels(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """The non-void pixels as a flat list: `(scores (M, C), labels (M,))`, M = number of labelled pixels.

    Selecting with a boolean mask means void pixels take no part in the computation, so their
    logits receive a gradient of exactly 0.
    """
    valid = target != ignore_index
    scores = logits.permute(0, 2, 3, 1)[valid]  # (M, C)
    return scores, target[valid]
