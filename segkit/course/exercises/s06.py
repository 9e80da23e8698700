"""Session 6 exercises: metrics, with void pixels and absent classes.

    confusion_matrix   (C, C) counts, rows = truth, columns = prediction, void pixels left out
    iou_per_class      IoU_c = TP / (TP + FP + FN) over the whole batch; NaN for a class absent from both
    precision_recall   TP / (TP + FP) and TP / (TP + FN) per class; NaN where the denominator is 0

Every function takes pred (N, H, W) int64 labels (the argmax of the logits), target (N, H, W) int64 with
255 = void, and num_classes. The references are segkit.metrics.ConfusionMatrix.
"""

from __future__ import annotations

import torch

from segkit.course.exercises.checker import Exercise, allclose, register
from segkit.metrics import ConfusionMatrix

VOID = 255


def _confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
               ignore_index: int) -> ConfusionMatrix:
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    confusion.update(pred, target)
    return confusion


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = VOID) -> torch.Tensor:
    """M[t, p] = number of pixels of true class t predicted as p, pixels with target == ignore_index left out.

    One bincount: index = num_classes * target + pred over the labelled pixels, minlength C * C, reshaped
    to (C, C). Returns int64 (C, C).
    """
    return _confusion(pred, target, num_classes, ignore_index).matrix


def iou_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                  ignore_index: int = VOID) -> torch.Tensor:
    """IoU_c = TP_c / (TP_c + FP_c + FN_c), counted over all pixels of the batch (not per image), void left
    out; NaN for a class that is neither in the target nor predicted (its IoU is undefined, not 0 or 1).
    Returns float (C,). mIoU = iou.nanmean()."""
    return _confusion(pred, target, num_classes, ignore_index).compute()["iou"]


def precision_recall(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = VOID) -> tuple[torch.Tensor, torch.Tensor]:
    """(precision, recall), each float (C,): precision_c = TP / (TP + FP) (NaN if c is never predicted),
    recall_c = TP / (TP + FN) (NaN if c is not in the target); void pixels left out."""
    metrics = _confusion(pred, target, num_classes, ignore_index).compute()
    return metrics["precision"], metrics["recall"]


def _labels(rng, shape, num_classes: int, void_share: float = 0.0) -> torch.Tensor:
    labels = torch.as_tensor(rng.integers(0, num_classes, shape), dtype=torch.int64)
    if void_share:
        labels[torch.as_tensor(rng.random(shape) < void_share)] = VOID
    return labels


def _noisy(rng, target: torch.Tensor, num_classes: int, error_share: float = 0.3) -> torch.Tensor:
    """A prediction: the target where it is labelled, with some pixels changed; random classes at void."""
    pred = torch.where(target == VOID, _labels(rng, tuple(target.shape), num_classes), target)
    flip = torch.as_tensor(rng.random(tuple(target.shape)) < error_share)
    return torch.where(flip, _labels(rng, tuple(target.shape), num_classes), pred)


def _metric_cases(rng) -> list[tuple[str, tuple]]:
    # The random cases hold one image each, where counting per image and over the batch agree: that
    # mistake shows on the two-image case written for it.
    target = _labels(rng, (1, 8, 16), 4, void_share=0.2)
    no_void = _labels(rng, (1, 6, 9), 3)
    few_classes = _labels(rng, (1, 10, 20), 4, void_share=0.1)
    void_only_class = _labels(rng, (2, 8, 8), 3, void_share=0.3)  # classes 0..2; class 3 absent
    predicted_at_void = torch.where(void_only_class == VOID, 3, void_only_class)  # 3 predicted only on void
    background_target = torch.zeros(1, 6, 6, dtype=torch.int64)
    background_target[0, :, 0] = VOID
    never_predicted_target = _labels(rng, (1, 7, 7), 3, void_share=0.1)
    never_predicted = never_predicted_target.clone().masked_fill(never_predicted_target == 2, 0)
    never_predicted[never_predicted == VOID] = 1
    # Per-image averaging differs from counting over the batch when images differ in size of classes.
    first = torch.zeros(8, 8, dtype=torch.int64)
    first[2:6, 2:6] = 1
    second = torch.zeros(8, 8, dtype=torch.int64)
    second[0, 0] = 1
    batch_target = torch.stack([first, second])
    batch_pred = batch_target.clone()
    batch_pred[0, 2:6, 2] = 0
    batch_pred[1, 0, 1] = 1
    return [
        ("a random 8x16 image, 4 classes, 20% void", (_noisy(rng, target, 4), target, 4)),
        ("no void pixel", (_noisy(rng, no_void, 3), no_void, 3)),
        ("class 3 predicted only on void pixels (must not count: absent from both)",
         (predicted_at_void, void_only_class, 4)),
        ("class 2 is in the target but never predicted", (never_predicted, never_predicted_target, 3)),
        ("all background, 3 classes: classes 1 and 2 absent from both",
         (torch.zeros(1, 6, 6, dtype=torch.int64), background_target, 3)),
        ("two images with objects of very different sizes (count over the batch, not per image)",
         (batch_pred, batch_target, 2)),
        ("every pixel void", (_labels(rng, (1, 4, 4), 3), torch.full((1, 4, 4), VOID, dtype=torch.int64), 3)),
        ("21 classes, most absent (a few predicted by mistake)",
         (_noisy(rng, few_classes, 21), few_classes, 21)),
    ]


def _same_counts(got, expected) -> str | None:
    """allclose, and counts must be integers: a float matrix loses exact counts past 2^24 pixels (float32)
    and is not what bincount gives."""
    message = allclose(got, expected)
    if message is not None:
        return message
    if isinstance(got, torch.Tensor) and (got.is_floating_point() or got.is_complex()):
        return f"the counts are right but of dtype {got.dtype}: a confusion matrix counts pixels (int64)"
    if not isinstance(got, torch.Tensor):
        return f"return a torch tensor (int64), got {type(got).__name__}"
    return None


register(Exercise(
    name="confusion_matrix",
    description="(C, C) int64, rows = truth, columns = prediction, void pixels left out (a bincount)",
    reference=confusion_matrix,
    make_cases=_metric_cases,
    hint="keep = target != ignore_index; torch.bincount(num_classes * target[keep] + pred[keep], "
         "minlength=num_classes ** 2).reshape(num_classes, num_classes) — row = truth, column = prediction; "
         "keep the int64 counts (no .float())",
    compare=_same_counts,
))

register(Exercise(
    name="iou_per_class",
    description="IoU_c = TP / (TP + FP + FN) over the batch, void left out, NaN for a class absent from both",
    reference=iou_per_class,
    make_cases=_metric_cases,
    hint="build the confusion matrix WITHOUT the void pixels (a prediction on a void pixel is neither right "
         "nor wrong); TP = diagonal, TP + FN = row sums, TP + FP = column sums, union = rows + columns - TP; "
         "where the union is 0 the IoU is NaN (not 0, not 1); count over the whole batch, not per image",
))

register(Exercise(
    name="precision_recall",
    description="(precision, recall) per class: TP / (TP + FP), TP / (TP + FN); NaN where undefined",
    reference=precision_recall,
    make_cases=_metric_cases,
    hint="precision divides by the column sums (everything PREDICTED as c), recall by the row sums "
         "(everything that IS c); leave void pixels out; NaN (not 0) when the sum is 0",
))
