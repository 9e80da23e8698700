"""segkit.metrics against torchmetrics and against values computed by hand."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from segkit.metrics import ConfusionMatrix, format_table

NAN = math.nan


def random_batch(num_classes: int, shape=(4, 24, 24), void_fraction=0.15, seed=0):
    """Random labels and predictions with void (255) pixels; every class appears in both."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=g)
    target[torch.rand(shape, generator=g) < void_fraction] = 255
    pred = torch.randint(0, num_classes, shape, generator=g)
    return pred, target


def assert_same(ours: torch.Tensor, expected) -> None:
    """Equal to float64 precision (hand-computed values), NaN where expected is NaN."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def assert_same_as_torchmetrics(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """torchmetrics computes in float32: compare to float32 precision."""
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-6, atol=1e-7, equal_nan=True)


def test_against_torchmetrics_when_every_class_is_present():
    C = 6
    cm = ConfusionMatrix(C)
    options = {"num_classes": C, "average": "none", "ignore_index": 255}
    jaccard, precision, recall = (MulticlassJaccardIndex(**options), MulticlassPrecision(**options),
                                  MulticlassRecall(**options))
    for seed in range(3):
        pred, target = random_batch(C, seed=seed)
        cm.update(pred, target)
        for metric in (jaccard, precision, recall):
            metric.update(pred, target)
    metrics = cm.compute()
    assert not metrics["iou"].isnan().any()
    assert_same_as_torchmetrics(metrics["iou"], jaccard.compute())
    assert_same_as_torchmetrics(metrics["precision"], precision.compute())
    assert_same_as_torchmetrics(metrics["recall"], recall.compute())
    assert metrics["miou"] == pytest.approx(jaccard.compute().double().mean().item(), rel=1e-6)


def test_confusion_matrix_equals_torchmetrics():
    C = 5
    cm = ConfusionMatrix(C)
    reference = MulticlassConfusionMatrix(num_classes=C, ignore_index=255)
    for seed in range(3):
        pred, target = random_batch(C, seed=seed)
        cm.update(pred, target)
        reference.update(pred, target)
    assert cm.matrix.dtype == torch.int64
    assert torch.equal(cm.matrix, reference.compute())


def test_undefined_classes_nan_here_zero_in_torchmetrics():
    """Class 2 never occurs, class 3 is only predicted, class 1 is never predicted: torchmetrics
    (zero_division=0) scores the 0/0 cases as 0, segkit as NaN and leaves them out of the means."""
    target = torch.tensor([[0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 3, 0, 0, 2]])  # the 2 is at a void pixel: not counted
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    ours = cm.compute()
    options = {"num_classes": 4, "average": "none", "ignore_index": 255}
    tm_iou = MulticlassJaccardIndex(**options)(pred, target)
    tm_precision = MulticlassPrecision(**options)(pred, target)
    tm_recall = MulticlassRecall(**options)(pred, target)

    # By hand: matrix rows = truth [[1, 0, 0, 1], [2, 0, 0, 0], 0, 0].
    assert_same(ours["iou"], [1 / 4, 0.0, NAN, 0.0])
    torch.testing.assert_close(tm_iou, torch.tensor([1 / 4, 0.0, 0.0, 0.0]))
    assert_same(ours["precision"], [1 / 3, NAN, NAN, 0.0])  # class 1 and 2 never predicted
    torch.testing.assert_close(tm_precision, torch.tensor([1 / 3, 0.0, 0.0, 0.0]))
    assert_same(ours["recall"], [1 / 2, 0.0, NAN, NAN])  # class 2 and 3 absent from the truth
    torch.testing.assert_close(tm_recall, torch.tensor([1 / 2, 0.0, 0.0, 0.0]))
    assert ours["miou"] == pytest.approx((1 / 4 + 0 + 0) / 3, rel=1e-12)


def test_hand_computed_3x3_image_with_an_absent_class():
    target = torch.tensor([[[0, 0, 1],
                            [0, 1, 1],
                            [2, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1],
                          [0, 1, 0],
                          [2, 0, 3]]])  # class 3 only at the void pixel: absent from truth and prediction
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    # Pairs (truth, prediction) over the 8 non-void pixels:
    # (0,0) (0,1) (1,1) / (0,0) (1,1) (1,0) / (2,2) (2,0)
    expected_matrix = torch.tensor([[2, 1, 0, 0],
                                    [1, 2, 0, 0],
                                    [1, 0, 1, 0],
                                    [0, 0, 0, 0]])
    assert torch.equal(cm.matrix, expected_matrix)
    m = cm.compute()
    # TP = [2, 2, 1, 0], truth = [3, 3, 2, 0], predicted = [4, 3, 1, 0]
    assert_same(m["iou"], [2 / 5, 2 / 4, 1 / 2, NAN])
    assert_same(m["precision"], [2 / 4, 2 / 3, 1 / 1, NAN])
    assert_same(m["recall"], [2 / 3, 2 / 3, 1 / 2, NAN])
    assert_same(m["f1"], [4 / 7, 4 / 6, 2 / 3, NAN])
    assert_same(m["pixel_share"], [3 / 8, 3 / 8, 2 / 8, 0.0])
    assert m["miou"] == pytest.approx((0.4 + 0.5 + 0.5) / 3, rel=1e-12)
    assert m["mean_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, rel=1e-12)
    assert m["mean_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3, rel=1e-12)
    assert m["mean_class_accuracy"] == pytest.approx(11 / 18, rel=1e-12)
    assert m["pixel_accuracy"] == pytest.approx(5 / 8, rel=1e-12)
    assert m["fw_iou"] == pytest.approx(3 / 8 * 0.4 + 3 / 8 * 0.5 + 2 / 8 * 0.5, rel=1e-12)


def test_all_background_prediction_on_imbalanced_data():
    """The course's point: 95% background, predict background everywhere -> 95% pixel accuracy but a low
    mIoU. By hand: IoU_bg = 380 / (380 + 20) = 0.95, IoU of the two object classes = 0."""
    target = torch.zeros(1, 20, 20, dtype=torch.int64)
    target[0, :10, :1] = 7  # 10 pixels
    target[0, 10:, :1] = 12  # 10 pixels
    pred = torch.zeros_like(target)
    cm = ConfusionMatrix(21)
    cm.update(pred, target)
    m = cm.compute()
    assert m["pixel_accuracy"] == pytest.approx(0.95, rel=1e-12)
    assert m["iou"][0].item() == pytest.approx(0.95, rel=1e-12)
    assert m["iou"][7].item() == 0.0 and m["iou"][12].item() == 0.0
    assert m["miou"] == pytest.approx(0.95 / 3, rel=1e-12)  # 18 classes absent from both: left out
    assert m["mean_class_accuracy"] == pytest.approx(1 / 3, rel=1e-12)
    assert m["fw_iou"] == pytest.approx(0.95 * 0.95, rel=1e-12)


def test_logits_and_labels_give_the_same_matrix():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 9, 11, generator=g)
    _, target = random_batch(5, shape=(2, 9, 11), seed=3)
    from_logits, from_labels = ConfusionMatrix(5), ConfusionMatrix(5)
    from_logits.update(logits, target)
    from_labels.update(logits.argmax(dim=1), target)
    assert torch.equal(from_logits.matrix, from_labels.matrix)
    assert from_logits.matrix.sum() == (target != 255).sum()


def test_streaming_equals_one_update_and_merge_equals_single():
    batches = [random_batch(4, shape=(2, 8, 8), seed=s) for s in range(4)]
    streaming, single = ConfusionMatrix(4), ConfusionMatrix(4)
    for pred, target in batches:
        streaming.update(pred, target)
    single.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert torch.equal(streaming.matrix, single.matrix)

    first, second = ConfusionMatrix(4), ConfusionMatrix(4)
    for pred, target in batches[:2]:
        first.update(pred, target)
    for pred, target in batches[2:]:
        second.update(pred, target)
    assert first.merge(second) is first and torch.equal(first.matrix, single.matrix)
    third = ConfusionMatrix(4)
    third += second
    assert torch.equal(third.matrix, second.matrix)
    with pytest.raises(ValueError, match="cannot merge a matrix with num_classes=5"):
        first.merge(ConfusionMatrix(5))

    first.reset()
    assert first.matrix.sum() == 0 and first.matrix.shape == (4, 4)


def test_inputs_are_not_modified_and_dtypes_are_flexible():
    pred, target = random_batch(3, shape=(2, 6, 6), seed=5)
    pred_copy, target_copy = pred.clone(), target.clone()
    reference = ConfusionMatrix(3)
    reference.update(pred, target)
    assert torch.equal(pred, pred_copy) and torch.equal(target, target_copy)
    small = ConfusionMatrix(3)
    small.update(pred.to(torch.uint8), target.to(torch.uint8))  # 255 fits in uint8; no overflow in C*t+p
    assert torch.equal(small.matrix, reference.matrix)


def test_bad_values_raise_clear_errors():
    cm = ConfusionMatrix(3)
    target = torch.tensor([[0, 1, 2, 255]])
    bad_pred = r"pred holds labels outside \[0, 3\) at non-ignored pixels: \[3, 5\]"
    with pytest.raises(ValueError, match=bad_pred):
        cm.update(torch.tensor([[3, 5, 0, 0]]), target)
    with pytest.raises(ValueError, match=r"outside \[0, 3\) at non-ignored pixels: \[-1\]"):
        cm.update(torch.tensor([[-1, 0, 0, 0]]), target)
    # Bad targets below 0, between C and the void value, and above it.
    bad_target = r"target holds values outside \[0, 3\) other than ignore_index=255: \[3\]"
    with pytest.raises(ValueError, match=bad_target):
        cm.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[3, 1, 2, 255]]))
    for values in ([-4, 7], [254, 256], [-1, 300]):
        with pytest.raises(ValueError, match=rf"target holds values .*: \[{values[0]}, {values[1]}\]"):
            cm.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([values + [2, 255]]))
    assert cm.matrix.sum() == 0  # nothing was counted by the failed updates

    # Any prediction at a void pixel is fine (e.g. the ground truth itself, with its 255s).
    cm.update(target.clone(), target)
    assert torch.equal(cm.matrix, torch.eye(3, dtype=torch.int64))
    cm.update(torch.tensor([[0, 1, 2, -3 * 255]]), target)  # C * 255 + p would be bin 0 without care
    assert torch.equal(cm.matrix, 2 * torch.eye(3, dtype=torch.int64))

    with pytest.raises(ValueError, match=r"pred shape \(1, 3\) and target shape \(1, 4\) do not match"):
        cm.update(torch.tensor([[0, 1, 2]]), target)
    with pytest.raises(ValueError, match=r"logits shape \(1, 4, 2, 2\) have 4 channels, expected 3"):
        cm.update(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="pred shape .* is torch.float32: give integer labels"):
        cm.update(torch.zeros(1, 4), target)
    with pytest.raises(TypeError, match="target shape .* is torch.float32, expected integer labels"):
        cm.update(torch.zeros(1, 4, dtype=torch.int64), target.float())


def test_other_ignore_indices():
    pred = torch.tensor([[0, 1, 1, 0]])
    cm = ConfusionMatrix(2, ignore_index=2)  # the smallest allowed: right after the classes
    cm.update(pred, torch.tensor([[0, 1, 2, 1]]))
    assert torch.equal(cm.matrix, torch.tensor([[1, 0], [1, 1]]))
    cm = ConfusionMatrix(2, ignore_index=None)
    with pytest.raises(ValueError, match=r"target holds values outside \[0, 2\): \[255\]"):
        cm.update(pred, torch.tensor([[0, 1, 255, 1]]))
    cm.update(pred, torch.tensor([[0, 1, 1, 1]]))
    assert torch.equal(cm.matrix, torch.tensor([[1, 0], [1, 2]]))
    for bad in (-100, 1, 2.0):
        with pytest.raises(ValueError, match="ignore_index must be None or an int >= num_classes=3"):
            ConfusionMatrix(3, ignore_index=bad)


def test_state_dict_round_trip_and_all_reduce_without_distributed():
    cm = ConfusionMatrix(4)
    cm.update(*random_batch(4, shape=(1, 5, 5)))
    buffer = io.BytesIO()
    torch.save(cm.state_dict(), buffer)
    buffer.seek(0)
    restored = ConfusionMatrix(4)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.matrix, cm.matrix)
    before = cm.matrix.clone()
    assert cm.all_reduce() is cm and torch.equal(cm.matrix, before)  # not initialised: no-op


def test_empty_matrix_gives_nan_not_an_error():
    m = ConfusionMatrix(3).compute()
    assert all(math.isnan(m[key]) for key in ("miou", "pixel_accuracy", "fw_iou", "mean_precision"))


def test_format_table():
    target = torch.tensor([[[0, 0, 1], [0, 1, 1], [2, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1], [0, 1, 0], [2, 0, 3]]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    table = format_table(cm.compute(), ["background", "cat", "dog", "horse"])
    lines = table.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:6]}
    rows["mean"] = next(line.split()[1:] for line in lines if line.startswith("mean "))
    # IoU, precision, recall in % and the pixel share: the hand-computed values above.
    assert rows["background"] == ["40.0", "50.0", "66.7", "37.5%"]
    assert rows["cat"] == ["50.0", "66.7", "66.7", "37.5%"]
    assert rows["horse"] == ["-", "-", "-", "0.0%"]  # NaN shown as "-"
    assert rows["mean"] == ["46.7", "72.2", "61.1"]
    assert "pixel accuracy" in table and "62.5" in table
    # Aligned: every class row has the same length as the header.
    assert len({len(line) for line in lines[:6]}) == 1
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        format_table(cm.compute(), ["a", "b", "c"])
