"""Segmentation metrics from one confusion matrix accumulated over the whole dataset (VOC definition).

The confusion matrix M is (C, C) int64 with rows = ground truth and columns = prediction: M[i, j] counts
the pixels of true class i predicted as class j. Void pixels (target == ignore_index, 255 in VOC) are
not counted. From M, per class c:

    TP_c = M[c, c]        FP_c = sum_i M[i, c] - TP_c        FN_c = sum_j M[c, j] - TP_c
    IoU_c       = TP / (TP + FP + FN)        NaN when the class is absent from truth AND prediction
    precision_c = TP / (TP + FP)             NaN when the class is never predicted
    recall_c    = TP / (TP + FN)             NaN when the class is absent from the ground truth
    F1_c = Dice_c = 2 TP / (2 TP + FP + FN)  NaN when absent from both

and over classes:

    miou                = nanmean(IoU)          (classes with NaN IoU are left out, as in VOC and mmseg)
    mean_precision      = nanmean(precision)
    mean_recall         = nanmean(recall)       (= mean_class_accuracy, the FCN paper's "mean accuracy")
    pixel_accuracy      = trace(M) / sum(M)
    fw_iou              = sum_c share_c * IoU_c,  share_c = sum_j M[c, j] / sum(M)  (frequency-weighted)

Other libraries treat undefined classes differently, which matters whenever a class is missing:
torchmetrics (1.9) reports 0 for a 0/0 class with average="none" (zero_division=0), and its macro
precision/recall count those zeros in the mean; its macro MulticlassJaccardIndex, however, leaves classes
with an empty union out and so equals segkit's miou. segmentation_models_pytorch's iou_score gives such a
class 1.0 (zero_division=1) and pushes the mean up; torchvision's reference takes a plain mean, which
becomes NaN. segkit leaves such classes out everywhere.

Metrics are accumulated over the dataset, never averaged per image.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from segkit.data.masks import VOID_INDEX


class ConfusionMatrix:
    """Streaming confusion matrix: call `update` for each batch, `compute` at the end.

    Args:
        num_classes: C.
        ignore_index: target value of void pixels, left out of every count: 255 in VOC, None for no void;
            it must be >= num_classes (a negative value such as torch's -100 is not supported).
        device: where `matrix` lives. None: it follows the tensors given to `update` (moved once, when
            they first arrive on another device). For distributed evaluation with NCCL use the GPU.

    Attribute `matrix`: (C, C) int64, rows = truth, columns = prediction.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = VOID_INDEX, device=None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
                                         or ignore_index < num_classes):
            raise ValueError(
                f"ignore_index must be None or an int >= num_classes={num_classes} (VOC: 255), "
                f"got {ignore_index!r}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        # Largest valid target value; the flat index C * target + pred is then at most C * largest + C - 1.
        self.largest_target = num_classes - 1 if ignore_index is None else ignore_index
        self.index_dtype = _smallest_int_dtype(num_classes * self.largest_target + num_classes - 1)
        self.follow_inputs = device is None
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        pred:   (N, H, W) integer labels, or (N, C, H, W) float logits/probabilities (argmax over dim 1).
        target: (N, H, W) integer labels in [0, C) or ignore_index.
        Any shape works as long as pred labels and target have the same shape.

        Computed as one bincount of the flat index C * target + pred, on the tensors' device, in the
        smallest integer dtype that holds every index (int16 for VOC's 21 classes and void 255): torchvision's
        recipe, without its boolean mask and its int64 (see the comments below).
        """
        C = self.num_classes
        if pred.is_floating_point() and pred.dim() == target.dim() + 1:
            if pred.shape[1] != C:
                raise ValueError(f"logits {_shape(pred)} have {pred.shape[1]} channels, expected {C}")
            pred = pred.argmax(dim=1)
        if pred.is_floating_point() or pred.is_complex():
            raise TypeError(
                f"pred {_shape(pred)} is {pred.dtype}: give integer labels (N, H, W) or logits (N, C, H, W)"
            )
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"target {_shape(target)} is {target.dtype}, expected integer labels")
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {_shape(pred)} and target {_shape(target)} do not match: expected labels of the "
                f"target's shape, or logits (N, {C}, H, W) for a target (N, H, W)"
            )
        if pred.device != target.device:
            raise ValueError(f"pred is on {pred.device} but target is on {target.device}")
        if target.numel() == 0:
            return

        # Cheap range checks: one min/max over each tensor. Only when one fails: the exact check (valid
        # pixels only) with its error message; predictions out of range at void pixels are allowed (say,
        # the ground truth itself) and are set to 0, in a copy, so that they cannot reach a class bin.
        pred_min, pred_max = torch.aminmax(pred)
        if pred_min.item() < 0 or pred_max.item() >= C:
            self._raise_for_bad_values(pred, target)
            pred = pred.masked_fill(target == self.ignore_index, 0)
        # A target below 0 or above the void value raises here; one between the classes and the void value
        # (C <= t < ignore_index) passes this check and is caught in the bincount below.
        target_min, target_max = torch.aminmax(target)
        if target_min.item() < 0 or target_max.item() > self.largest_target:
            self._raise_for_bad_values(pred, target)

        # Flat index C * target + pred: bin C * t + p counts truth t predicted as p. Both are now known to
        # be in range, so the index fits self.index_dtype (int16 for VOC): a narrower index is less memory
        # to write and to read back, and bincount counts int16 faster than int64 (same counts).
        # Void pixels (t = ignore_index >= C) land on bins C * ignore_index + p, past the C * C bins we
        # keep, so they need no mask: no boolean selection copies the valid pixels out.
        flat = torch.add(pred.to(self.index_dtype), target.to(self.index_dtype), alpha=C)
        counts = torch.bincount(flat.reshape(-1), minlength=C * C)
        # A target value between the classes and the void value lands in the gap between the C * C class
        # bins and the void bins.
        if self.ignore_index is not None and counts[C * C : C * self.ignore_index].any().item():
            self._raise_for_bad_values(pred, target)
        counts = counts[: C * C].view(C, C)

        if self.follow_inputs and self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts.to(self.matrix.device)

    def _raise_for_bad_values(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Raise a ValueError naming the out-of-range values; return if all valid pixels are fine."""
        C = self.num_classes
        if self.ignore_index is None:
            valid = torch.ones_like(target, dtype=torch.bool)
        else:
            valid = target != self.ignore_index
        bad_target = target[valid & ((target < 0) | (target >= C))]
        if bad_target.numel():
            void = "" if self.ignore_index is None else f" other than ignore_index={self.ignore_index}"
            raise ValueError(f"target holds values outside [0, {C}){void}: {_some_values(bad_target)}")
        bad_pred = pred[valid & ((pred < 0) | (pred >= C))]
        if bad_pred.numel():
            raise ValueError(
                f"pred holds labels outside [0, {C}) at non-ignored pixels: {_some_values(bad_pred)}"
            )

    def reset(self) -> None:
        """Set all counts to zero."""
        self.matrix.zero_()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of `other` (same num_classes and ignore_index) into this matrix; returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a matrix with num_classes={other.num_classes}, "
                f"ignore_index={other.ignore_index} into one with num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}"
            )
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrices of all processes (torch.distributed, in place) so that every rank holds the
        matrix of the whole dataset; a no-op when torch.distributed is not initialised. Returns self."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        return self

    def state_dict(self) -> dict:
        """Plain types and one CPU tensor: safe for torch.save / torch.load(weights_only=True)."""
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "matrix": self.matrix.detach().cpu().clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["num_classes"], state["ignore_index"]) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"state has num_classes={state['num_classes']}, ignore_index={state['ignore_index']}; "
                f"this matrix has num_classes={self.num_classes}, ignore_index={self.ignore_index}"
            )
        self.matrix.copy_(state["matrix"])

    def compute(self) -> dict:
        """Metrics from the accumulated matrix (formulas in the module docstring).

        Returns a dict with (C,) float64 CPU tensors "iou", "precision", "recall", "f1", "pixel_share"
        (fraction of the non-void ground-truth pixels in each class), and floats "miou",
        "mean_precision", "mean_recall", "pixel_accuracy", "mean_class_accuracy", "fw_iou"
        (NaN when nothing has been counted).
        """
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diag()
        truth = m.sum(dim=1)  # TP + FN
        predicted = m.sum(dim=0)  # TP + FP
        union = truth + predicted - tp
        total = m.sum()
        iou = _divide(tp, union)
        precision = _divide(tp, predicted)
        recall = _divide(tp, truth)
        share = _divide(truth, total.expand_as(truth))
        # A class with NaN IoU has no ground-truth pixel, so share 0: nansum leaves it out of fw_iou.
        fw_iou = (share * iou).nansum().item() if total > 0 else math.nan
        return {
            "iou": iou,
            "precision": precision,
            "recall": recall,
            "f1": _divide(2 * tp, truth + predicted),
            "pixel_share": share,
            "miou": iou.nanmean().item(),
            "mean_precision": precision.nanmean().item(),
            "mean_recall": recall.nanmean().item(),
            "pixel_accuracy": (tp.sum() / total).item() if total > 0 else math.nan,
            "mean_class_accuracy": recall.nanmean().item(),
            "fw_iou": fw_iou,
        }


def _smallest_int_dtype(largest: int) -> torch.dtype:
    """int16, int32 or int64: the narrowest signed integer dtype that holds 0..largest."""
    for dtype in (torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, NaN where the denominator is 0."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.nan)


def _shape(tensor: torch.Tensor) -> str:
    return f"shape {tuple(tensor.shape)}"


def _some_values(values: torch.Tensor, limit: int = 10) -> str:
    unique = torch.unique(values).tolist()
    more = f" ... ({len(unique)} distinct)" if len(unique) > limit else ""
    return f"{unique[:limit]}{more}"


def format_table(
    metrics: dict, class_names: list[str] | tuple[str, ...] | None = None, pixel_share=None
) -> str:
    """A per-class table of IoU, precision, recall (in %) and share of ground-truth pixels, with the means.

    metrics: the dict from ConfusionMatrix.compute(). class_names: C names (default "class 0", ...).
    pixel_share: (C,) fractions; default metrics["pixel_share"]. Undefined values (NaN) are shown as "-".
    """
    iou = metrics["iou"]
    num_classes = len(iou)
    if class_names is None:
        class_names = [f"class {c}" for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes in the metrics")
    if pixel_share is None:
        pixel_share = metrics.get("pixel_share")

    def pct(value) -> str:
        value = float(value)
        return "-" if math.isnan(value) else f"{100 * value:.1f}"

    summary = [("pixel accuracy", "pixel_accuracy"), ("mean class accuracy", "mean_class_accuracy"),
               ("frequency-weighted IoU", "fw_iou")]
    width = max(len(str(name)) for name in [*class_names, *(label for label, _ in summary)])
    header = f"{'class':<{width}}  {'IoU':>6}  {'prec.':>6}  {'recall':>6}  {'pixels':>7}"
    lines = [header, "-" * len(header)]
    for c, name in enumerate(class_names):
        share = "-" if pixel_share is None else pct(pixel_share[c]) + "%"
        row = f"{str(name):<{width}}  {pct(iou[c]):>6}  {pct(metrics['precision'][c]):>6}  "
        lines.append(row + f"{pct(metrics['recall'][c]):>6}  {share:>7}")
    lines.append("-" * len(header))
    mean_row = f"{'mean':<{width}}  {pct(metrics['miou']):>6}  {pct(metrics['mean_precision']):>6}  "
    lines.append(mean_row + f"{pct(metrics['mean_recall']):>6}")
    for label, key in summary:
        lines.append(f"{label:<{width}}  {pct(metrics[key]):>6}")
    return "\n".join(lines)
