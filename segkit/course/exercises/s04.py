"""Session 4 exercises: losses for segmentation.

    soft_dice_loss            multiclass soft Dice with a smoothing term, void pixels left out
    focal_loss                softmax focal loss (Lin et al. 2017); gamma = 0 is cross-entropy
    median_frequency_weights  class weights of Eigen & Fergus (2015): median frequency / frequency

Every loss takes logits (N, C, H, W) float and target (N, H, W) int64 with 255 = void, like segkit.losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segkit.course.exercises.checker import Exercise, allclose, register
from segkit.losses import FocalLoss
from segkit.losses import median_frequency_weights as segkit_median_frequency_weights

VOID = 255


def compare_loss(got, expected) -> str | None:
    """Like `allclose`, and a loss computed from logits that require a gradient must keep its graph
    (a float, `.item()`, NumPy or argmax cannot be trained with)."""
    if isinstance(expected, torch.Tensor) and expected.requires_grad:
        if not isinstance(got, torch.Tensor):
            return (f"expected a torch scalar that keeps its gradient, got {type(got).__name__} "
                    f"(do not call .item() or go through NumPy)")
        if not got.requires_grad:
            return "your loss has no gradient: did you use argmax, .detach(), .item() or NumPy on the way?"
    return allclose(got, expected)


def _logits(rng, shape, scale: float = 2.0) -> torch.Tensor:
    """Random logits that require a gradient, as a network's output would."""
    return torch.tensor(rng.normal(0.0, scale, shape), dtype=torch.float32, requires_grad=True)


def _labels(rng, shape, num_classes: int, void_share: float = 0.0) -> torch.Tensor:
    labels = torch.as_tensor(rng.integers(0, num_classes, shape), dtype=torch.int64)
    if void_share:
        labels[torch.as_tensor(rng.random(shape) < void_share)] = VOID
    return labels


# ------------------------------------------------------------------------------------------ soft Dice


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
                   ignore_index: int = VOID) -> torch.Tensor:
    """Soft Dice loss over the batch, every class counted, void pixels left out.

    p = softmax(logits) over the C classes, y = one-hot target; sums over the batch and all labelled
    pixels i (target != ignore_index):
        I_c = sum_i p_ic y_ic      P_c = sum_i p_ic      T_c = sum_i y_ic
        Dice_c = (2 I_c + smooth) / (P_c + T_c + smooth)
        loss = 1 - mean over all C classes of Dice_c
    The smooth term decides what a class absent from the batch scores: about 1 when it is not predicted
    either (P_c << smooth), about 0 when it is; without it such a class scores 0, and an all-void batch
    gives 0/0 = NaN. (segkit.losses.DiceLoss and smp give absent classes loss 0 instead; with smooth = 0
    and every class present the three agree.)

    logits: (N, C, H, W) float; target: (N, H, W) int64, 255 = void. Returns a scalar tensor.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)  # (N, 1, H, W)
    probs = logits.softmax(dim=1) * valid
    one_hot = F.one_hot(target.masked_fill(~valid[:, 0], 0), num_classes).permute(0, 3, 1, 2) * valid
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    dice = (2 * intersection + smooth) / (probs.sum(dims) + one_hot.sum(dims) + smooth)
    return 1.0 - dice.mean()


def _dice_cases(rng) -> list[tuple[str, tuple]]:
    absent = _labels(rng, (2, 6, 6), 3)  # classes 0..2 only: class 3 never occurs
    quiet = _logits(rng, (2, 4, 6, 6))
    with torch.no_grad():
        quiet[:, 3] = -20.0  # ... and the network does not predict it: Dice_3 should be about 1
    loud = _logits(rng, (2, 4, 6, 6))
    with torch.no_grad():
        loud[:, 3] = 6.0  # ... but the network predicts it everywhere: Dice_3 about 0
    tiny = torch.zeros(1, 5, 5, dtype=torch.int64)
    tiny[0, 2, 2:4] = 1  # an object of two pixels
    every_class = torch.arange(3).repeat(2, 4, 2)[:, :, :5]  # (2, 4, 5): all three classes present
    return [
        ("random logits, 4 classes, no void, smooth=1",
         (_logits(rng, (2, 4, 6, 6)), _labels(rng, (2, 6, 6), 4), 1.0)),
        ("20% void pixels, smooth=1", (_logits(rng, (2, 4, 6, 6)), _labels(rng, (2, 6, 6), 4, 0.2), 1.0)),
        ("class 3 absent from the target and not predicted (Dice_3 about 1 thanks to smooth)",
         (quiet, absent, 1.0)),
        ("class 3 absent from the target but predicted everywhere", (loud, absent, 1.0)),
        ("a two-pixel object, smooth=1", (_logits(rng, (1, 2, 5, 5)), tiny, 1.0)),
        ("every pixel void (smooth makes it 0 instead of 0/0)",
         (_logits(rng, (1, 3, 4, 4)), torch.full((1, 4, 4), VOID, dtype=torch.int64), 1.0)),
        ("smooth=0, every class present", (_logits(rng, (2, 3, 4, 5)), every_class, 0.0)),
        ("one image, smooth=0.5, 10% void",
         (_logits(rng, (1, 5, 8, 8)), _labels(rng, (1, 8, 8), 5, 0.1), 0.5)),
    ]


register(Exercise(
    name="soft_dice_loss",
    description="1 - mean over classes of (2 I_c + smooth) / (P_c + T_c + smooth), on softmax probabilities",
    reference=soft_dice_loss,
    make_cases=_dice_cases,
    compare=compare_loss,
    hint="softmax over dim 1; drop void pixels from BOTH the probabilities and the one-hot target (multiply "
         "by a mask); sum I, P, T over batch and pixels (dims 0, 2, 3), one value per class; add smooth to "
         "numerator and denominator; average over all C classes",
))


# ----------------------------------------------------------------------------------------- focal loss


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               ignore_index: int = VOID) -> torch.Tensor:
    """Softmax focal loss (Lin et al. 2017), mean over the labelled pixels.

        p_t = softmax(logits)[true class],  FL = -(1 - p_t)^gamma * log p_t,  loss = mean over
        pixels with target != ignore_index (0 when there is none).
    gamma = 0 gives the cross-entropy. Same as segkit.losses.FocalLoss(gamma).

    logits: (N, C, H, W) float; target: (N, H, W) int64, 255 = void. Returns a scalar tensor.
    """
    return FocalLoss(gamma=gamma, ignore_index=ignore_index)(logits, target)


def _focal_cases(rng) -> list[tuple[str, tuple]]:
    confident_target = _labels(rng, (1, 4, 4), 3)
    confident = (F.one_hot(confident_target, 3).permute(0, 3, 1, 2).float() * 12.0).requires_grad_()
    return [
        ("random logits, gamma=2", (_logits(rng, (2, 4, 5, 5)), _labels(rng, (2, 5, 5), 4), 2.0)),
        ("gamma=0: must equal the cross-entropy",
         (_logits(rng, (2, 3, 5, 5)), _labels(rng, (2, 5, 5), 3), 0.0)),
        ("25% void pixels, gamma=2", (_logits(rng, (2, 4, 6, 6)), _labels(rng, (2, 6, 6), 4, 0.25), 2.0)),
        ("gamma=5", (_logits(rng, (1, 5, 6, 6)), _labels(rng, (1, 6, 6), 5), 5.0)),
        ("gamma=0.5", (_logits(rng, (1, 3, 6, 6)), _labels(rng, (1, 6, 6), 3, 0.1), 0.5)),
        ("a confident, correct network (loss near 0)", (confident, confident_target, 2.0)),
        ("every pixel void (loss 0, not NaN)",
         (_logits(rng, (1, 3, 4, 4)), torch.full((1, 4, 4), VOID, dtype=torch.int64), 2.0)),
    ]


register(Exercise(
    name="focal_loss",
    description="mean over labelled pixels of -(1 - p_t)^gamma log p_t (p_t: softmax prob. of the truth)",
    reference=focal_loss,
    make_cases=_focal_cases,
    compare=compare_loss,
    hint="log_softmax over dim 1, gather the true class's log p_t (replace void labels by 0 first, then drop "
         "those pixels), p_t = exp(log p_t); the factor is (1 - p_t)**gamma, not p_t**gamma; divide by the "
         "number of labelled pixels only, and return 0 (a tensor) when there is none",
))


# --------------------------------------------------------------------------- median-frequency weights


def median_frequency_weights(pixel_counts: torch.Tensor, image_pixel_counts: torch.Tensor) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus 2015): w_c = median(freq) / freq_c.

        freq_c = n_c / m_c   (n_c: pixels of class c; m_c: pixels of the images in which c appears)
    The median is over the classes present (n_c > 0); with an even number of them it is the mean of the
    two middle values. Absent classes get weight 0. Same as segkit.losses.median_frequency_weights.

    pixel_counts, image_pixel_counts: (C,) int64. Returns (C,) float.
    """
    return segkit_median_frequency_weights(pixel_counts, image_pixel_counts)


def _median_cases(rng) -> list[tuple[str, tuple]]:
    # The shapes training set (`segkit data stats data/shapes`): VOC indices, 15 of the 21 classes absent.
    shapes_counts = torch.zeros(21, dtype=torch.int64)
    shapes_image_counts = torch.zeros(21, dtype=torch.int64)
    for c, n, m in [(0, 4_139_091, 4_725_896), (1, 64_706, 1_612_362), (3, 73_754, 1_763_807),
                    (7, 164_447, 2_101_131), (15, 93_082, 1_982_160), (16, 190_816, 1_893_551)]:
        shapes_counts[c], shapes_image_counts[c] = n, m
    random_counts = torch.as_tensor(rng.integers(10, 1000, 5), dtype=torch.int64)
    random_image_counts = random_counts + torch.as_tensor(rng.integers(0, 5000, 5), dtype=torch.int64)
    return [
        ("three classes (odd number: the median is the middle one)",
         (torch.tensor([600, 100, 50]), torch.tensor([1000, 400, 500]))),
        ("four classes (even number: the median is the mean of the two middle ones)",
         (torch.tensor([700, 90, 40, 10]), torch.tensor([1000, 300, 400, 200]))),
        ("every class in every image (all m_c equal)",
         (torch.tensor([500, 300, 200]), torch.tensor([1000, 1000, 1000]))),
        ("an absent class gets weight 0",
         (torch.tensor([800, 0, 150, 50]), torch.tensor([1000, 0, 600, 300]))),
        ("the shapes training set (21 VOC classes, 15 absent)", (shapes_counts, shapes_image_counts)),
        ("random counts, 5 classes", (random_counts, random_image_counts)),
        ("a single class present", (torch.tensor([0, 40, 0]), torch.tensor([0, 90, 0]))),
    ]


register(Exercise(
    name="median_frequency_weights",
    description="w_c = median over present classes of freq / freq_c, freq_c = n_c / m_c; absent classes 0",
    reference=median_frequency_weights,
    make_cases=_median_cases,
    hint="freq_c = pixel_counts[c] / image_pixel_counts[c] (not n_c / sum n); take the median over the "
         "classes with n_c > 0 only; torch.median returns the LOWER middle value for an even count "
         "(use torch.quantile(x, 0.5) or numpy.median); weight 0 where n_c = 0",
))
