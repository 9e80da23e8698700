"""Exercises of sessions 4-6: each reference passes its own checker, plausible wrong answers fail (with a
hint), and the references agree with independent computations (by hand on tiny cases, torch, torchmetrics,
smp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

import segkit.course.exercises.s04  # noqa: F401  (registers the exercises even before __init__ imports them)
import segkit.course.exercises.s05  # noqa: F401
import segkit.course.exercises.s06  # noqa: F401
from segkit.course.exercises.checker import EXERCISES, check
from segkit.course.exercises.s04 import focal_loss, median_frequency_weights, soft_dice_loss
from segkit.course.exercises.s05 import poly_lr, sgd_momentum_step
from segkit.course.exercises.s06 import confusion_matrix, iou_per_class, precision_recall
from segkit.losses import DiceLoss

VOID = 255
NAMES = ["soft_dice_loss", "focal_loss", "median_frequency_weights", "poly_lr", "sgd_momentum_step",
         "confusion_matrix", "iou_per_class", "precision_recall"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_its_own_checker(name, capsys):
    assert check(name, EXERCISES[name].reference) is True
    assert "✅" in capsys.readouterr().out


def assert_fails(name, fn, capsys):
    assert check(name, fn) is False
    out = capsys.readouterr().out
    assert "❌" in out and "hint:" in out, out


# ------------------------------------------------------------------------------------------- session 4


def dice_variant(logits, target, smooth=1.0, ignore_index=VOID, *, use_smooth=True, drop_void=True,
                 activation="softmax", per_image=False, present_only=False):
    """The soft Dice loss with one of its parts switched off: the wrong answers below."""
    num_classes = logits.shape[1]
    valid = (target != ignore_index) if drop_void else torch.ones_like(target, dtype=torch.bool)
    valid = valid[:, None]
    probs = {"softmax": logits.softmax(1), "sigmoid": logits.sigmoid(), "none": logits}[activation] * valid
    labels = target.masked_fill(target == ignore_index, 0)
    one_hot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2) * valid
    s = smooth if use_smooth else 0.0
    dims = (2, 3) if per_image else (0, 2, 3)
    intersection, predicted, true = (probs * one_hot).sum(dims), probs.sum(dims), one_hot.sum(dims)
    dice = (2 * intersection + s) / (predicted + true + s)
    if present_only:
        return 1 - dice[true > 0].mean()
    return 1 - dice.mean()


def test_soft_dice_by_hand_on_a_tiny_case():
    # One image of 1 x 2 pixels, 2 classes, one pixel void. Only pixel 0 counts: truth class 1.
    logits = torch.tensor([[[[0.0, 5.0]], [[math.log(3.0), -5.0]]]])  # pixel 0: p = (1/4, 3/4)
    target = torch.tensor([[[1, VOID]]])
    # class 0: I = 0, P = 1/4, T = 0;  class 1: I = 3/4, P = 3/4, T = 1
    for smooth in (0.0, 1.0):
        dice0 = (0 + smooth) / (0.25 + 0 + smooth)
        dice1 = (1.5 + smooth) / (0.75 + 1 + smooth)
        expected = 1 - (dice0 + dice1) / 2
        assert soft_dice_loss(logits, target, smooth).item() == pytest.approx(expected, rel=1e-6)


def test_soft_dice_with_every_class_present_and_no_smooth_equals_segkit_and_smp():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6)
    target = torch.arange(3).repeat(2, 6, 2)  # (2, 6, 6): every class present
    target[0, 0, :] = VOID
    ours = soft_dice_loss(logits, target, smooth=0.0)
    assert torch.allclose(ours, DiceLoss()(logits, target), atol=1e-6)
    smp_dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=VOID)(logits, target)
    assert torch.allclose(ours, smp_dice, atol=1e-5)


def test_soft_dice_smooth_decides_absent_classes_and_all_void():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 4, 4)
    logits[:, 2] = -30.0  # class 2 is not predicted...
    target = torch.randint(0, 2, (1, 4, 4))  # ... and not in the target: with smooth its Dice is ~1
    with_smooth = soft_dice_loss(logits, target, smooth=1.0)
    only_two = soft_dice_loss(logits[:, :2], target, smooth=1.0)
    assert with_smooth.item() == pytest.approx((2 * only_two.item() + 0) / 3, abs=1e-6)
    all_void = torch.full((1, 4, 4), VOID)
    assert soft_dice_loss(logits, all_void, smooth=1.0).item() == 0.0
    assert torch.isnan(soft_dice_loss(logits, all_void, smooth=0.0))  # why the smooth term exists


def one_hot_of_argmax(logits):
    return F.one_hot(logits.argmax(1), logits.shape[1]).permute(0, 3, 1, 2).float()


def test_soft_dice_wrong_answers(capsys):
    wrong_answers = [
        lambda l, t, s=1.0: dice_variant(l, t, s, use_smooth=False),  # Dice without the smooth term
        lambda l, t, s=1.0: dice_variant(l, t, s, drop_void=False),  # void pixels counted
        lambda l, t, s=1.0: dice_variant(l, t, s, activation="sigmoid"),  # sigmoid instead of softmax
        lambda l, t, s=1.0: dice_variant(l, t, s, activation="none"),  # raw logits
        lambda l, t, s=1.0: dice_variant(l, t, s, per_image=True),  # averaged per image
        lambda l, t, s=1.0: dice_variant(l, t, s, present_only=True),  # absent classes skipped
        lambda l, t, s=1.0: dice_variant(l, t, s).item(),  # a float: no gradient
        lambda l, t, s=1.0: dice_variant(one_hot_of_argmax(l), t, s),  # argmax: no gradient
    ]
    for wrong in wrong_answers:
        assert_fails("soft_dice_loss", wrong, capsys)


def focal_variant(logits, target, gamma=2.0, ignore_index=VOID, *, kind="right"):
    valid = target != ignore_index
    log_p = F.log_softmax(logits, 1).gather(1, target.masked_fill(~valid, 0)[:, None]).squeeze(1)
    p = log_p.exp()
    if kind == "p_to_gamma":
        focal = -(p**gamma) * log_p
    elif kind == "no_log":
        focal = (1 - p) ** gamma * (1 - p)
    else:
        focal = -((1 - p) ** gamma) * log_p
    if kind == "mean_over_all_pixels":
        return (focal * valid).mean()
    if kind == "nan_when_all_void":
        return focal[valid].mean()
    return (focal * valid).sum() / valid.sum().clamp(min=1)


def test_focal_by_hand_and_gamma_zero_is_cross_entropy():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # 2 classes, 1 x 2 pixels
    target = torch.tensor([[[0, 0]]])
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (1 + math.e)]
    expected = sum(-((1 - q) ** 2) * math.log(q) for q in p) / 2
    assert focal_loss(logits, target, 2.0).item() == pytest.approx(expected, rel=1e-6)
    torch.manual_seed(0)
    logits, target = torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4))
    target[1, :2] = VOID
    assert torch.allclose(focal_loss(logits, target, 0.0), F.cross_entropy(logits, target, ignore_index=VOID))


def test_focal_wrong_answers(capsys):
    for kind in ("p_to_gamma", "no_log", "mean_over_all_pixels", "nan_when_all_void"):
        assert_fails("focal_loss", lambda l, t, g=2.0, kind=kind: focal_variant(l, t, g, kind=kind), capsys)
    smp_focal = smp.losses.FocalLoss  # one-vs-rest sigmoid terms: not the softmax focal loss
    assert_fails("focal_loss", lambda l, t, g=2.0: smp_focal("multiclass", gamma=g, ignore_index=VOID)(l, t),
                 capsys)


def test_median_frequency_weights_by_hand():
    n = torch.tensor([700, 0, 90, 40, 10])
    m = torch.tensor([1000, 0, 300, 400, 200])
    freq = np.array([0.7, 0.3, 0.1, 0.05])  # present classes: n / m
    median = np.median(freq)  # 0.2: the mean of the two middle values
    expected = [median / 0.7, 0.0, median / 0.3, median / 0.1, median / 0.05]
    assert median_frequency_weights(n, m).tolist() == pytest.approx(expected, rel=1e-6)


def median_variant(n, m, *, kind):
    n, m = n.double(), m.double()
    present = n > 0
    freq = n / n.sum() if kind == "share" else torch.where(present, n / m.clamp(min=1), torch.zeros_like(n))
    if kind == "lower_median":
        median = freq[present].median()
    elif kind == "median_over_all_classes":
        median = freq.quantile(0.5)
    else:
        median = freq[present].quantile(0.5)
    weights = median / freq
    return weights if kind == "inf_for_absent" else torch.where(present, weights, torch.zeros_like(weights))


def test_median_frequency_wrong_answers(capsys):
    for kind in ("share", "lower_median", "median_over_all_classes", "inf_for_absent"):
        wrong = lambda n, m, kind=kind: median_variant(n, m, kind=kind)  # noqa: E731
        assert_fails("median_frequency_weights", wrong, capsys)


# ------------------------------------------------------------------------------------------- session 5


def test_poly_lr_matches_the_formula_and_torch():
    base, total = 0.01, 50
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=base)
    torch_poly = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=0.9)
    for step in range(total):
        torch_lr = optimizer.param_groups[0]["lr"]
        assert poly_lr(step, base, total) == pytest.approx(torch_lr, rel=1e-9, abs=1e-15)
        optimizer.step()
        torch_poly.step()
    slow, slow_lr = 10, 1e-4
    for step in range(total + 5):
        if step < slow:
            expected = slow_lr
        else:
            expected = base * (1 - min(step - slow, total - slow) / (total - slow)) ** 0.9
        assert poly_lr(step, base, total, slow, slow_lr) == pytest.approx(expected, rel=1e-9, abs=1e-15)
        linear = poly_lr(step, base, total, slow, slow_lr, "linear")
        assert linear <= base
        if step < slow:
            assert linear == pytest.approx(slow_lr + (base - slow_lr) * step / slow)


def poly_variant(step, base, total, slow=0, slow_lr=0.0, kind="constant", power=0.9, *, bug):
    if step < slow and bug != "ignores_slow_start":
        return slow_lr if kind == "constant" else slow_lr + (base - slow_lr) * step / slow
    if bug == "t_instead_of_t_prime":
        return base * (1 - min(step, total) / total) ** power
    if bug == "t_over_t_prime_total":
        return base * max(0.0, 1 - step / (total - slow)) ** power
    if bug == "no_clamp_after_the_end":
        return base * (1 - (step - slow) / (total - slow)) ** power  # complex past the end
    factor = (1 - min(step - slow, total - slow) / (total - slow)) ** power
    if bug == "keeps_rising" and kind == "linear":
        return base * (step / slow) * factor  # the burn-in factor never stops growing
    if bug == "ramp_never_ends" and kind == "linear":
        return slow_lr + (base - slow_lr) * step / slow if step < total else 0.0
    return base * factor


def test_poly_lr_wrong_answers(capsys):
    for bug in ("t_instead_of_t_prime", "t_over_t_prime_total", "no_clamp_after_the_end", "keeps_rising",
                "ramp_never_ends", "ignores_slow_start"):
        assert_fails("poly_lr", lambda *args, bug=bug: poly_variant(*args, bug=bug), capsys)


def test_sgd_momentum_step_by_hand_over_several_steps():
    # Three steps with a changing rate: the reference, torch.optim.SGD itself, and the update written out.
    torch.manual_seed(0)
    start = torch.randn(4)
    grads = [torch.randn(4) for _ in range(3)]
    rates = [0.1, 0.05, 0.02]
    p = start.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([p], lr=rates[0], momentum=0.9, weight_decay=0.01)
    param, buf = start.clone(), torch.zeros(4)
    by_hand_param, by_hand_buf = start.clone(), torch.zeros(4)
    for grad, lr in zip(grads, rates, strict=True):
        optimizer.param_groups[0]["lr"] = lr
        p.grad = grad.clone()
        optimizer.step()
        param, buf = sgd_momentum_step(param, grad, buf, lr, 0.9, 0.01)
        by_hand_buf = 0.9 * by_hand_buf + grad + 0.01 * by_hand_param
        by_hand_param = by_hand_param - lr * by_hand_buf
        assert torch.allclose(param, p.detach(), atol=1e-6)
        assert torch.allclose(param, by_hand_param, atol=1e-6) and torch.allclose(buf, by_hand_buf, atol=1e-6)


def sgd_variant(param, grad, buf, lr, momentum=0.9, weight_decay=0.0, *, bug):
    g = grad + weight_decay * param
    if bug == "exponential_average":
        new_buf = momentum * buf + (1 - momentum) * g
        return param - lr * new_buf, new_buf
    if bug == "decoupled_decay":
        new_buf = momentum * buf + grad
        return param - lr * (new_buf + weight_decay * param), new_buf
    if bug == "lr_inside_the_buffer":
        new_buf = momentum * buf + lr * g
        return param - new_buf, new_buf
    if bug == "old_buffer_in_the_step":
        new_buf = momentum * buf + g
        return param - lr * g - momentum * buf, new_buf
    if bug == "returns_the_old_buffer":
        return param - lr * (momentum * buf + g), buf
    raise ValueError(bug)


def test_sgd_momentum_step_wrong_answers(capsys):
    for bug in ("exponential_average", "decoupled_decay", "lr_inside_the_buffer", "old_buffer_in_the_step",
                "returns_the_old_buffer"):
        assert_fails("sgd_momentum_step", lambda *args, bug=bug: sgd_variant(*args, bug=bug), capsys)


# ------------------------------------------------------------------------------------------- session 6


def random_case(seed=0, num_classes=5, shape=(3, 9, 11)):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes - 1, shape, generator=generator)  # the last class never occurs
    target[torch.rand(shape, generator=generator) < 0.2] = VOID
    pred = torch.randint(0, num_classes, shape, generator=generator)
    return pred, target


def test_confusion_matrix_matches_torchmetrics_and_a_loop():
    pred, target = random_case()
    ours = confusion_matrix(pred, target, 5)
    theirs = MulticlassConfusionMatrix(5, ignore_index=VOID)(pred, target)
    assert torch.equal(ours, theirs)
    loop = torch.zeros(5, 5, dtype=torch.int64)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist(), strict=True):
        if t != VOID:
            loop[t, p] += 1
    assert torch.equal(ours, loop)


def test_iou_precision_recall_match_torchmetrics_where_defined_and_nan_elsewhere():
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (3, 9, 11), generator=generator)  # classes 0..3
    target[torch.rand(target.shape, generator=generator) < 0.2] = VOID
    pred = torch.randint(0, 5, (3, 9, 11), generator=generator)  # class 4: predicted, never in the target
    # class 5: neither in the target nor predicted -> NaN here, 0 in torchmetrics
    iou = iou_per_class(pred, target, 6)
    precision, recall = precision_recall(pred, target, 6)
    tm_iou = MulticlassJaccardIndex(6, average="none", ignore_index=VOID)(pred, target)
    tm_precision = MulticlassPrecision(6, average="none", ignore_index=VOID)(pred, target)
    tm_recall = MulticlassRecall(6, average="none", ignore_index=VOID)(pred, target)
    assert torch.isnan(iou[5]) and tm_iou[5] == 0
    assert torch.allclose(iou[:5].float(), tm_iou[:5], atol=1e-6)
    assert torch.isnan(precision[5]) and torch.isnan(recall[5])
    assert torch.allclose(precision[:5].float(), tm_precision[:5], atol=1e-6)
    assert torch.isnan(recall[4])  # class 4 is predicted but never in the target
    assert torch.allclose(recall[:4].float(), tm_recall[:4], atol=1e-6)
    # torchmetrics' macro Jaccard leaves the empty-union class out, like segkit's nanmean
    macro = MulticlassJaccardIndex(6, average="macro", ignore_index=VOID)(pred, target)
    assert iou.nanmean().item() == pytest.approx(macro.item(), rel=1e-5)


def test_iou_by_hand_on_a_tiny_case():
    target = torch.tensor([[[0, 0, 1, VOID]]])
    pred = torch.tensor([[[0, 1, 1, 2]]])  # class 2 predicted only on the void pixel: absent from both
    iou = iou_per_class(pred, target, 3)
    assert iou[0].item() == pytest.approx(1 / 2) and iou[1].item() == pytest.approx(1 / 2)
    assert torch.isnan(iou[2])


def iou_variant(pred, target, num_classes, ignore_index=VOID, *, bug):
    if bug == "per_image":
        per_image = [iou_per_class(p[None], t[None], num_classes) for p, t in zip(pred, target, strict=True)]
        return torch.stack(per_image).nanmean(0)
    if bug == "void_as_background":
        return iou_per_class(pred, target.masked_fill(target == ignore_index, 0), num_classes)
    values = []
    for c in range(num_classes):
        if bug == "void_counted":  # void not excluded: predictions on void pixels become false positives
            intersection = ((pred == c) & (target == c)).sum()
            union = ((pred == c) | (target == c)).sum()
        else:
            keep = target != ignore_index
            intersection = ((pred == c) & (target == c) & keep).sum()
            union = (((pred == c) | (target == c)) & keep).sum()
        if union == 0:
            values.append({"absent_is_0": 0.0, "absent_is_1": 1.0}.get(bug, math.nan))
        else:
            values.append(intersection.item() / union.item())
    return torch.tensor(values, dtype=torch.float64)


def test_iou_per_class_wrong_answers(capsys):
    for bug in ("void_counted", "void_as_background", "absent_is_0", "absent_is_1", "per_image"):
        wrong = lambda p, t, c, i=VOID, bug=bug: iou_variant(p, t, c, i, bug=bug)  # noqa: E731
        assert_fails("iou_per_class", wrong, capsys)
    torchmetrics_none = MulticlassJaccardIndex  # 0 for an absent class
    assert_fails("iou_per_class",
                 lambda p, t, c, i=VOID: torchmetrics_none(c, average="none", ignore_index=i)(p, t), capsys)


def confusion_variant(pred, target, num_classes, ignore_index=VOID, *, bug):
    if bug == "void_as_background":
        target = target.masked_fill(target == ignore_index, 0)
        return torch.bincount((num_classes * target + pred).flatten(), minlength=num_classes**2).view(
            num_classes, num_classes)
    keep = target != ignore_index
    if bug == "transposed":
        flat = num_classes * pred[keep] + target[keep]
        return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)
    if bug == "no_minlength":
        return torch.bincount(num_classes * target[keep] + pred[keep]).view(num_classes, num_classes)
    raise ValueError(bug)


def test_confusion_matrix_as_float_fails_naming_the_dtype(capsys):
    assert check("confusion_matrix", lambda p, t, c, i=VOID: confusion_matrix(p, t, c, i).float()) is False
    assert "the counts are right but of dtype torch.float32" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["iou_per_class", "precision_recall"])
def test_averaging_per_image_fails_on_the_case_written_for_it(name, capsys):
    def per_image(pred, target, num_classes, ignore_index=VOID):
        results = [EXERCISES[name].reference(p[None], t[None], num_classes, ignore_index)
                   for p, t in zip(pred, target, strict=True)]  # fmt: skip
        if name == "iou_per_class":
            return torch.stack(results).nanmean(0)
        return tuple(torch.stack(parts).nanmean(0) for parts in zip(*results, strict=True))

    assert check(name, per_image) is False
    out = capsys.readouterr().out
    assert "First failure, case 6 (two images with objects of very different sizes (count over" in out


def test_confusion_matrix_wrong_answers(capsys):
    for bug in ("void_as_background", "transposed", "no_minlength"):
        wrong = lambda p, t, c, i=VOID, bug=bug: confusion_variant(p, t, c, i, bug=bug)  # noqa: E731
        assert_fails("confusion_matrix", wrong, capsys)


def precision_recall_variant(pred, target, num_classes, ignore_index=VOID, *, bug):
    if bug == "void_counted":
        target = target.masked_fill(target == ignore_index, 0)
    matrix = confusion_matrix(pred, target, num_classes, ignore_index).double()
    tp, predicted, true = matrix.diag(), matrix.sum(0), matrix.sum(1)
    if bug == "swapped":
        predicted, true = true, predicted
    if bug == "zero_not_nan":
        return tp / predicted.clamp(min=1), tp / true.clamp(min=1)
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return torch.where(predicted > 0, tp / predicted, nan), torch.where(true > 0, tp / true, nan)


def test_precision_recall_wrong_answers(capsys):
    for bug in ("swapped", "zero_not_nan", "void_counted"):
        assert_fails("precision_recall",
                     lambda p, t, c, i=VOID, bug=bug: precision_recall_variant(p, t, c, i, bug=bug), capsys)
