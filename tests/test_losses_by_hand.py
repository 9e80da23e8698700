"""Hard-pixel mining, boundary loss and loss combinations, checked on tiny cases worked out by hand
(plain Python / numpy), against scipy's distance transform and torch's own cross-entropy/interpolation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt

from segkit.losses import (
    AuxLoss,
    BoundaryLoss,
    CrossEntropyLoss,
    MultiScaleLoss,
    OHEMCrossEntropyLoss,
    TopKCrossEntropyLoss,
    WeightedSum,
    build_loss,
    class_distance_maps,
    resize_labels_nearest,
    signed_distance_map,
)

VOID = 255


def two_class_pixels(margins, labels):
    """One image, 1 row, two classes. Pixel j has logit[label] - logit[other] = margins[j], so
    its cross-entropy is log(1 + exp(-margin)) and its true-class probability 1 / (1 + exp(-margin))."""
    logits = torch.zeros(1, 2, 1, len(margins), dtype=torch.float64)
    for j, (margin, label) in enumerate(zip(margins, labels, strict=True)):
        if label != VOID:
            logits[0, label, 0, j] = margin
    return logits, torch.tensor([[labels]])


def ce_of(margin):
    return math.log(1 + math.exp(-margin))


# ---------------------------------------------------------------- DeepLab top-k

# six pixels, one void; losses of the labelled ones, from largest: margins -2 > -1 > 0 > 1 > 2
TOPK_MARGINS = [1.0, -2.0, 0.0, 5.0, 2.0, -1.0]
TOPK_LABELS = [0, 1, 0, VOID, 1, 1]


def test_top_k_follows_deeplab_formula_through_annealing():
    logits, target = two_class_pixels(TOPK_MARGINS, TOPK_LABELS)
    largest_first = sorted((ce_of(m) for m, t in zip(TOPK_MARGINS, TOPK_LABELS, strict=True) if t != VOID),
                           reverse=True)
    loss = TopKCrossEntropyLoss(top_k_percent_pixels=0.5, hard_example_mining_step=10)
    # N = 6 pixels (the void one counts), p = 0.5
    # step 0: ratio 0 -> k = int(1.0 * 6) = 6: all five positive losses + the void 0 -> divide by 5
    loss.set_step(0)
    assert loss(logits, target).item() == pytest.approx(sum(largest_first) / 5)
    # step 3: ratio 0.3 -> k = int((0.15 + 0.7) * 6) = int(5.1) = 5 -> the five positive losses / 5
    loss.set_step(3)
    assert loss(logits, target).item() == pytest.approx(sum(largest_first) / 5)
    # step 5: ratio 0.5 -> k = int((0.25 + 0.5) * 6) = int(4.5) = 4
    loss.set_step(5)
    assert loss(logits, target).item() == pytest.approx(sum(largest_first[:4]) / 4)
    # step 10 and later: ratio 1 -> k = int(0.5 * 6) = 3
    for step in (10, 1000):
        loss.set_step(step)
        assert loss(logits, target).item() == pytest.approx(sum(largest_first[:3]) / 3)
    # hard_example_mining_step 0: ratio 1 from the start
    assert TopKCrossEntropyLoss(0.5, 0)(logits, target).item() == pytest.approx(sum(largest_first[:3]) / 3)
    # p = 1: mean over the five labelled pixels, whatever the step
    assert TopKCrossEntropyLoss(1.0, 10)(logits, target).item() == pytest.approx(sum(largest_first) / 5)


def test_top_k_counts_void_in_n_but_not_in_the_denominator():
    # 6 pixels, 4 void: step 0 keeps k = 6 -> the two positive losses / 2 (the zeros are not counted)
    margins, labels = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0, 1, VOID, VOID, VOID, VOID]
    logits, target = two_class_pixels(margins, labels)
    loss = TopKCrossEntropyLoss(top_k_percent_pixels=0.25, hard_example_mining_step=100)
    assert loss(logits, target).item() == pytest.approx((ce_of(0.0) + ce_of(1.0)) / 2)
    # fully annealed: k = int(0.25 * 6) = 1 -> only the largest loss
    loss.set_step(100)
    assert loss(logits, target).item() == pytest.approx(ce_of(0.0))


def test_top_k_gradient_only_on_kept_pixels():
    logits, target = two_class_pixels(TOPK_MARGINS, TOPK_LABELS)
    logits.requires_grad_()
    TopKCrossEntropyLoss(0.5)(logits, target).backward()  # keeps the 3 largest: margins -2, -1, 0
    has_grad = (logits.grad != 0).any(dim=1)[0, 0].tolist()
    assert has_grad == [False, True, True, False, False, True]


def test_top_k_rejects_bad_settings():
    with pytest.raises(ValueError, match="top_k_percent_pixels"):
        TopKCrossEntropyLoss(0.0)
    with pytest.raises(ValueError, match="step"):
        TopKCrossEntropyLoss(0.5).set_step(-1)


# ---------------------------------------------------------------- mmseg OHEM

# two images of three pixels; true-class probabilities sigmoid(margin)
OHEM_MARGINS = [3.0, 2.0, 0.0, -1.0, 1.0, 4.0]
OHEM_LABELS = [0, 1, 1, 0, 1, VOID]


def ohem_batch():
    logits, target = two_class_pixels(OHEM_MARGINS, OHEM_LABELS)
    # reshape one row of 6 pixels into 2 images of 1x3
    return logits.view(1, 2, 2, 3).permute(2, 1, 0, 3).contiguous(), target.view(2, 1, 3)


def test_ohem_with_threshold_by_hand():
    logits, target = ohem_batch()
    # labelled probabilities sorted: s(-1)=.269, s(0)=.5, s(1)=.731, s(2)=.881, s(3)=.953; n = 5
    # min_kept 1 per image -> K = 2; threshold = max(sorted[2] = .731, 0.7) = .731 -> keep .269 and .5
    loss = OHEMCrossEntropyLoss(thresh=0.7, min_kept=1)
    assert loss(logits, target).item() == pytest.approx((ce_of(-1.0) + ce_of(0.0)) / 2)
    # thresh 0.9 is above sorted[2] -> keep every probability below 0.9: margins -1, 0, 1, 2
    loss = OHEMCrossEntropyLoss(thresh=0.9, min_kept=1)
    assert loss(logits, target).item() == pytest.approx(sum(ce_of(m) for m in (-1.0, 0.0, 1.0, 2.0)) / 4)
    # min_kept 10 -> K = 20 >= n -> threshold = max(sorted[n - 1] = .953, 0.7): all but the most confident
    loss = OHEMCrossEntropyLoss(thresh=0.7, min_kept=10)
    assert loss(logits, target).item() == pytest.approx(sum(ce_of(m) for m in (-1.0, 0.0, 1.0, 2.0)) / 4)


def test_ohem_without_threshold_keeps_the_largest_losses():
    logits, target = ohem_batch()
    # K = 2 * min_kept largest cross-entropies among the labelled pixels
    assert OHEMCrossEntropyLoss(thresh=None, min_kept=1)(logits, target).item() == pytest.approx(
        (ce_of(-1.0) + ce_of(0.0)) / 2)
    assert OHEMCrossEntropyLoss(thresh=None, min_kept=2)(logits, target).item() == pytest.approx(
        sum(ce_of(m) for m in (-1.0, 0.0, 1.0, 2.0)) / 4)
    # K larger than the labelled pixels: plain cross-entropy
    expected = F.cross_entropy(logits, target, ignore_index=VOID)
    loss = OHEMCrossEntropyLoss(thresh=None, min_kept=50)
    assert loss(logits, target).item() == pytest.approx(expected.item())


# ---------------------------------------------------------------- boundary loss

SQUARE = np.zeros((4, 4), dtype=bool)
SQUARE[:2, :2] = True  # a 2x2 object in the top-left corner of a 4x4 image
# outside: distance to the nearest object pixel; inside: -(distance to nearest outside pixel - 1)
SQUARE_PHI = np.array([
    [-1.0, 0.0, 1.0, 2.0],
    [0.0, 0.0, 1.0, 2.0],
    [1.0, 1.0, math.sqrt(2), math.sqrt(5)],
    [2.0, 2.0, math.sqrt(5), math.sqrt(8)],
])


def test_signed_distance_map_by_hand_and_against_scipy():
    phi = signed_distance_map(SQUARE)
    assert np.allclose(phi, SQUARE_PHI)
    from_scipy = np.where(SQUARE, -(distance_transform_edt(SQUARE) - 1), distance_transform_edt(~SQUARE))
    assert np.allclose(phi, from_scipy)
    assert (signed_distance_map(np.zeros((3, 3), bool)) == 0).all()
    assert (signed_distance_map(np.ones((3, 3), bool)) == 0).all()


def test_class_distance_maps_treat_void_as_outside_and_absent_classes_as_zero():
    target = torch.from_numpy(SQUARE.astype(np.int64))[None]  # class 1 = the square
    target[0, 3, 3] = VOID
    maps = class_distance_maps(target, [1, 2])
    assert np.allclose(maps[0, 0].numpy(), SQUARE_PHI)  # void is outside the class: same map
    assert (maps[0, 1] == 0).all()  # class 2 is absent


def test_boundary_loss_by_hand():
    target = torch.from_numpy(SQUARE.astype(np.int64))[None]
    logits = torch.zeros(1, 2, 4, 4, dtype=torch.float64)  # softmax = 1/2 everywhere
    loss = BoundaryLoss(classes=[1])
    assert loss(logits, target).item() == pytest.approx(0.5 * SQUARE_PHI.sum() / 16)
    # sum of phi by hand: 2 + 3 + (2 + sqrt2 + sqrt5) + (4 + sqrt5 + sqrt8)
    assert SQUARE_PHI.sum() == pytest.approx(11 + math.sqrt(2) + 2 * math.sqrt(5) + math.sqrt(8))
    # a void pixel drops out of the sum and of the count
    target[0, 3, 3] = VOID
    assert loss(logits, target).item() == pytest.approx(0.5 * (SQUARE_PHI.sum() - math.sqrt(8)) / 15)


def test_boundary_loss_all_classes_with_numpy_softmax():
    target = torch.from_numpy(SQUARE.astype(np.int64))[None]
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 4, 4, generator=generator, dtype=torch.float64)
    probs = np.exp(logits[0].numpy()) / np.exp(logits[0].numpy()).sum(axis=0)
    phi_background = np.where(~SQUARE, -(distance_transform_edt(~SQUARE) - 1), distance_transform_edt(SQUARE))
    expected = (probs[0] * phi_background + probs[1] * SQUARE_PHI).sum() / (16 * 2)
    assert BoundaryLoss()(logits, target).item() == pytest.approx(expected)


# ---------------------------------------------------------------- combinations


def random_batch(seed, n=2, c=3, h=8, w=8):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    target = torch.randint(0, c, (n, h, w), generator=generator)
    return logits, target.masked_fill(torch.rand(n, h, w, generator=generator) < 0.2, VOID)


def test_weighted_sum_and_set_step_forwarding():
    logits, target = random_batch(0)
    top_k = TopKCrossEntropyLoss(top_k_percent_pixels=0.25, hard_example_mining_step=10)
    loss = WeightedSum([(CrossEntropyLoss(), 1.0), (top_k, 0.5)])
    ce = F.cross_entropy(logits, target, ignore_index=VOID).item()
    assert loss(logits, target).item() == pytest.approx(1.5 * ce)  # step 0: top-k keeps every pixel
    loss.set_step(10)
    assert top_k.step == 10
    pixel_losses = F.cross_entropy(logits, target, ignore_index=VOID, reduction="none").flatten()
    k = int(0.25 * pixel_losses.numel())
    hardest = pixel_losses.sort(descending=True).values[:k]
    assert loss(logits, target).item() == pytest.approx(ce + 0.5 * hardest.mean().item())


def test_aux_loss_on_tensor_and_dict_and_step_forwarding():
    out, target = random_batch(1)
    aux, _ = random_batch(2)
    loss = AuxLoss(CrossEntropyLoss(), aux_weight=0.4)
    ce_out = F.cross_entropy(out, target, ignore_index=VOID).item()
    ce_aux = F.cross_entropy(aux, target, ignore_index=VOID).item()
    assert loss(out, target).item() == pytest.approx(ce_out)
    assert loss({"out": out}, target).item() == pytest.approx(ce_out)
    assert loss({"out": out, "aux": aux}, target).item() == pytest.approx(ce_out + 0.4 * ce_aux)
    with pytest.raises(ValueError, match="'out'"):
        loss({"logits": out}, target)
    nested = build_loss({"name": "aux", "loss": {"name": "top_k", "top_k_percent_pixels": 0.5,
                                                 "hard_example_mining_step": 4}})
    nested.set_step(3)
    assert nested.loss.step == 3


def test_nearest_label_resize_matches_torch_and_keeps_void():
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (2, 9, 12), generator=generator)
    target[:, :4, :4] = VOID  # a void block in the top-left corner
    for size in [(3, 4), (4, 5), (9, 12), (18, 24)]:
        resized = resize_labels_nearest(target, size)
        reference = F.interpolate(target[:, None].double(), size=size, mode="nearest-exact")[:, 0].long()
        assert torch.equal(resized, reference)
        assert set(resized.unique().tolist()) <= set(target.unique().tolist())
    # 9x12 -> 3x4: output pixel (0, 0) samples input (1, 1), inside the void block
    assert (resize_labels_nearest(target, (3, 4))[:, 0, 0] == VOID).all()


def test_multiscale_downsamples_labels_or_upsamples_logits():
    _, target = random_batch(4, h=8, w=8)
    small, _ = random_batch(5, h=4, w=4)
    small_target = F.interpolate(target[:, None].double(), size=(4, 4), mode="nearest-exact")[:, 0].long()
    expected_small = F.cross_entropy(small, small_target, ignore_index=VOID).item()
    loss = MultiScaleLoss(CrossEntropyLoss())
    assert loss(small, target).item() == pytest.approx(expected_small)
    upsampled = F.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    expected_up = F.cross_entropy(upsampled, target, ignore_index=VOID).item()
    upsampling = MultiScaleLoss(CrossEntropyLoss(), resize="logits")
    assert upsampling(small, target).item() == pytest.approx(expected_up)
    full, _ = random_batch(6, h=8, w=8)
    expected_full = F.cross_entropy(full, target, ignore_index=VOID).item()
    weighted = MultiScaleLoss(CrossEntropyLoss(), weights=[1.0, 0.5])
    assert weighted([full, small], target).item() == pytest.approx(expected_full + 0.5 * expected_small)
    with pytest.raises(ValueError, match="2 outputs but 3 weights"):
        MultiScaleLoss(CrossEntropyLoss(), weights=[1.0, 0.5, 0.2])([full, small], target)
