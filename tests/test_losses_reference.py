"""Soft Dice, soft Jaccard and Lovász-softmax compared with segmentation_models_pytorch (the reference)."""

import pytest
import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.losses.lovasz import _lovasz_softmax

from segkit.losses import DiceLoss, JaccardLoss, LovaszSoftmaxLoss, build_loss

VOID = 255


def batch(seed, with_void, n=2, c=5, h=6, w=7):
    """Random logits and labels drawn from classes {0, 1, 3} only, so classes 2 and 4 are absent."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    target = torch.tensor([0, 1, 3])[torch.randint(0, 3, (n, h, w), generator=generator)]
    if with_void:
        target = target.masked_fill(torch.rand(n, h, w, generator=generator) < 0.25, VOID)
        assert (target == VOID).any()
    return logits, target


def value_and_grad(loss, logits, target):
    logits = logits.clone().requires_grad_()
    value = loss(logits, target)
    value.backward()
    return value.detach(), logits.grad


REGION_SETTINGS = [
    {"smooth": 0.0},
    {"smooth": 1.0},
    {"smooth": 0.0, "classes": [0, 2, 3]},
    {"smooth": 1.0, "log_loss": True},
    {"smooth": 0.5, "eps": 1e-3, "classes": [1, 4]},
]


@pytest.mark.parametrize("with_void", [True, False], ids=["void", "no-void"])
@pytest.mark.parametrize("settings", REGION_SETTINGS, ids=str)
@pytest.mark.parametrize(
    "ours, theirs",
    [(DiceLoss, smp.losses.DiceLoss), (JaccardLoss, smp.losses.JaccardLoss)],
    ids=["dice", "jaccard"],
)
def test_region_losses_match_smp(ours, theirs, settings, with_void):
    logits, target = batch(seed=len(str(settings)), with_void=with_void)
    ignore_index = VOID if with_void else None
    reference = theirs(mode="multiclass", from_logits=True, ignore_index=ignore_index, **settings)
    expected, expected_grad = value_and_grad(reference, logits, target)
    value, grad = value_and_grad(ours(**settings), logits, target)
    assert torch.allclose(value, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


def test_dice_all_classes_absent_except_one_by_hand():
    # one pixel of class 1, predicted with probability 1/2 each of 2 classes (zero logits), smooth 0:
    # class 1: I = 0.5, P = 0.5, T = 1 -> score = 0.5 / 0.75; class 0 absent -> loss 0 but counted
    logits = torch.zeros(1, 2, 1, 1)
    target = torch.tensor([[[1]]])
    assert DiceLoss()(logits, target).item() == pytest.approx((1 - 0.5 / 0.75) / 2)
    # Jaccard: I / (P + T - I) = 0.5 / 1
    assert JaccardLoss()(logits, target).item() == pytest.approx((1 - 0.5) / 2)


@pytest.mark.parametrize("with_void", [True, False], ids=["void", "no-void"])
@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "per-image"])
def test_lovasz_matches_smp(per_image, with_void):
    logits, target = batch(seed=11, with_void=with_void)
    logits = logits.float()  # smp's Lovász works in float32 only
    reference = smp.losses.LovaszLoss(mode="multiclass", per_image=per_image,
                                      ignore_index=VOID if with_void else None)
    expected, expected_grad = value_and_grad(reference, logits, target)
    value, grad = value_and_grad(LovaszSoftmaxLoss(per_image=per_image), logits, target)
    assert torch.allclose(value, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


@pytest.mark.parametrize("classes", ["all", [2, 3]], ids=str)
def test_lovasz_class_selection_matches_berman_reference(classes):
    logits, target = batch(seed=12, with_void=True)
    logits = logits.float()
    expected = _lovasz_softmax(logits.softmax(dim=1), target, classes=classes, ignore=VOID)
    assert torch.allclose(build_loss({"name": "lovasz", "classes": classes})(logits, target), expected,
                          atol=1e-6)


def test_lovasz_by_hand_one_class_two_pixels():
    # two classes, two pixels both of class 0 with p_0 = 0.9 and 0.6, so class 1 is absent ("present"
    # selects class 0 only). Errors |1 - p_0| = 0.1, 0.4, sorted: 0.4, 0.1. With G = 2 foreground pixels:
    # J_1 = 1 - (2 - 1)/2 = 0.5, J_2 = 1 - 0/2 = 1 -> gradient (0.5, 0.5) -> loss 0.4*0.5 + 0.1*0.5 = 0.25
    p0 = torch.tensor([0.9, 0.6], dtype=torch.float64)
    logits = torch.stack([p0.log(), (1 - p0).log()]).view(1, 2, 1, 2)
    assert LovaszSoftmaxLoss()(logits, torch.zeros(1, 1, 2, dtype=torch.long)).item() == pytest.approx(0.25)
