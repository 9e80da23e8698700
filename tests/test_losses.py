"""segkit.losses: cross-entropy, class weights, focal loss, properties shared by every loss, build_loss.

References: torch.nn.functional.cross_entropy, numpy, and values worked out by hand in the tests.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segkit.losses import (
    LOSSES,
    AuxLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    MultiScaleLoss,
    TopKCrossEntropyLoss,
    WeightedSum,
    build_loss,
    inverse_frequency_weights,
    median_frequency_weights,
)

VOID = 255


def random_batch(seed=0, n=2, c=4, h=5, w=6, void_fraction=0.2):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    target = torch.randint(0, c, (n, h, w), generator=generator)
    void = torch.rand(n, h, w, generator=generator) < void_fraction
    return logits, target.masked_fill(void, VOID)


# ---------------------------------------------------------------- cross-entropy and class weights


def test_cross_entropy_matches_torch_with_void():
    logits, target = random_batch()
    assert (target == VOID).any()
    expected = F.cross_entropy(logits, target, ignore_index=VOID)
    assert torch.allclose(CrossEntropyLoss()(logits, target), expected, atol=1e-12)


def test_weighted_cross_entropy_matches_torch():
    logits, target = random_batch(seed=1)
    weights = [0.5, 2.0, 1.0, 3.0]
    expected = F.cross_entropy(logits, target, weight=torch.tensor(weights, dtype=torch.float64),
                               ignore_index=VOID)
    assert torch.allclose(CrossEntropyLoss(class_weights=weights)(logits, target), expected, atol=1e-6)


def test_inverse_frequency_weights_by_hand():
    # freq = [0.6, 0.3, 0.1, absent]; 1/freq = [5/3, 10/3, 10]; mean over present = 5
    weights = inverse_frequency_weights([60, 30, 10, 0])
    assert torch.allclose(weights, torch.tensor([1 / 3, 2 / 3, 2.0, 0.0]))
    assert weights.dtype == torch.float32


def test_median_frequency_weights_by_hand_odd_and_even():
    # odd: freq = 60/100, 30/60, 10/40 = [0.6, 0.5, 0.25]; median 0.5; class 3 absent -> 0
    weights = median_frequency_weights([60, 30, 10, 0], [100, 60, 40, 0])
    assert torch.allclose(weights, torch.tensor([0.5 / 0.6, 1.0, 2.0, 0.0]))
    # even: freq = [0.6, 0.5, 0.25, 0.1]; median = (0.25 + 0.5) / 2 = 0.375 (numpy's convention)
    freq = np.array([0.6, 0.5, 0.25, 0.1])
    assert np.median(freq) == pytest.approx(0.375)
    weights = median_frequency_weights(np.array([60, 30, 10, 5]), torch.tensor([100, 60, 40, 50]))
    assert torch.allclose(weights, torch.tensor(0.375 / freq, dtype=torch.float32))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: inverse_frequency_weights([0, 0]), "all zero"),
        (lambda: inverse_frequency_weights([3, -1]), "non-negative"),
        (lambda: inverse_frequency_weights([[1, 2]]), "1-D"),
        (lambda: median_frequency_weights([5, 5], [4, 10]), "classes \\[0\\]"),
        (lambda: median_frequency_weights([5, 5], [10, 10, 10]), "2 classes"),
    ],
)
def test_class_weight_helpers_reject_bad_counts(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- focal loss


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = random_batch(seed=2)
    expected = F.cross_entropy(logits, target, ignore_index=VOID)
    assert abs(FocalLoss(gamma=0.0)(logits, target).item() - expected.item()) < 1e-6


def test_focal_by_hand_gamma_two_with_and_without_alpha():
    # two classes; every pixel gets probabilities (0.8, 0.2); pixel labels: 0, 1, void
    probs = torch.tensor([0.8, 0.2], dtype=torch.float64)
    logits = probs.log().view(1, 2, 1, 1).repeat(1, 1, 1, 3)
    target = torch.tensor([[[0, 1, VOID]]])
    fl_pixel_0 = -(1 - 0.8) ** 2 * math.log(0.8)  # p_t = 0.8
    fl_pixel_1 = -(1 - 0.2) ** 2 * math.log(0.2)  # p_t = 0.2
    expected = (fl_pixel_0 + fl_pixel_1) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(expected, abs=1e-9)
    alpha = [0.25, 0.75]
    expected = (0.25 * fl_pixel_0 + 0.75 * fl_pixel_1) / 2  # plain mean over labelled pixels
    assert FocalLoss(gamma=2.0, alpha=alpha)(logits, target).item() == pytest.approx(expected, abs=1e-9)


def test_focal_gamma_below_one_has_finite_gradient_at_certain_pixels():
    logits = torch.tensor([[[[80.0]], [[-80.0]]]], requires_grad=True)  # p_0 == 1 in float32
    FocalLoss(gamma=0.5)(logits, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- properties of every loss

ALL_SPECS = [
    "cross_entropy",
    {"name": "cross_entropy", "class_weights": [1.0, 2.0, 0.5, 1.0]},
    {"name": "focal", "gamma": 2.0, "alpha": [0.5, 1.0, 1.0, 2.0]},
    {"name": "dice", "smooth": 1.0},
    "jaccard",
    "lovasz",
    {"name": "lovasz", "per_image": True, "classes": "all"},
    {"name": "top_k", "top_k_percent_pixels": 0.3},
    {"name": "ohem", "thresh": 0.7, "min_kept": 3},
    {"name": "ohem", "thresh": None, "min_kept": 3},
    "boundary",
    {"name": "sum", "terms": [{"name": "cross_entropy", "weight": 1.0}, {"name": "dice", "weight": 0.5}]},
    {"name": "aux", "loss": "focal", "aux_weight": 0.4},
    {"name": "multiscale", "loss": "cross_entropy"},
]


def spec_id(spec):
    return spec if isinstance(spec, str) else spec["name"]


def test_every_registered_loss_is_covered():
    assert {spec_id(spec) for spec in ALL_SPECS} == set(LOSSES)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=spec_id)
def test_gradient_is_finite_and_exactly_zero_at_void_pixels(spec):
    loss = build_loss(spec)
    logits, target = random_batch(seed=3, void_fraction=0.3)
    logits = logits.float().requires_grad_()
    value = loss(logits, target)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    grad = logits.grad
    assert torch.isfinite(grad).all()
    void = (target == VOID).unsqueeze(1).expand_as(grad)
    assert void.any() and (grad[void] == 0).all()
    assert (grad[~void] != 0).any()


@pytest.mark.parametrize("spec", ALL_SPECS, ids=spec_id)
def test_all_void_batch_gives_zero_with_a_gradient(spec):
    loss = build_loss(spec)
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), VOID)
    value = loss(logits, target)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert (logits.grad == 0).all()


def test_aux_dict_output_also_zero_when_all_void():
    loss = build_loss({"name": "aux", "loss": "cross_entropy"})
    out, aux = torch.randn(1, 3, 2, 2, requires_grad=True), torch.randn(1, 3, 2, 2, requires_grad=True)
    value = loss({"out": out, "aux": aux}, torch.full((1, 2, 2), VOID))
    assert value.item() == 0.0
    value.backward()
    assert (out.grad == 0).all() and (aux.grad == 0).all()


@pytest.mark.parametrize(
    "logits, target, message",
    [
        (torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4), "integer tensor"),
        (torch.randn(3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), r"\(N, C, H, W\)"),
        (torch.randn(1, 3, 2, 2), torch.zeros(1, 4, 4, dtype=torch.long), "MultiScaleLoss"),
        (torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [3, 255]]]), r"labels \[3\]"),
    ],
)
def test_bad_inputs_fail_clearly(logits, target, message):
    with pytest.raises(ValueError, match=f"CrossEntropyLoss.*{message}"):
        CrossEntropyLoss()(logits, target)


def test_dict_output_without_aux_wrapper_fails_clearly():
    logits, target = random_batch(seed=6)
    with pytest.raises(TypeError, match="wrap the loss in AuxLoss"):
        CrossEntropyLoss()({"out": logits, "aux": logits}, target)


def test_uint8_masks_are_accepted():
    logits, target = random_batch(seed=4)
    assert torch.equal(CrossEntropyLoss()(logits, target.to(torch.uint8)), CrossEntropyLoss()(logits, target))


# ---------------------------------------------------------------- build_loss


def test_build_loss_from_each_spec_form():
    assert isinstance(build_loss("cross_entropy"), CrossEntropyLoss)
    focal = build_loss({"name": "focal", "gamma": 2})
    assert isinstance(focal, FocalLoss) and focal.gamma == 2.0
    summed = build_loss({"name": "sum", "terms": [{"name": "cross_entropy", "weight": 1.0},
                                                  {"name": "dice", "weight": 0.5, "smooth": 1.0}, "jaccard"]})
    assert isinstance(summed, WeightedSum) and summed.weights == [1.0, 0.5, 1.0]
    assert isinstance(summed.losses[1], DiceLoss) and summed.losses[1].smooth == 1.0
    aux = build_loss({"name": "aux", "loss": {"name": "top_k", "top_k_percent_pixels": 0.25},
                      "aux_weight": 0.4})
    assert isinstance(aux, AuxLoss) and aux.aux_weight == 0.4 and isinstance(aux.loss, TopKCrossEntropyLoss)
    multi = build_loss({"name": "multiscale", "loss": "dice", "weights": [1.0, 0.5], "resize": "logits"})
    assert isinstance(multi, MultiScaleLoss) and multi.resize == "logits"


def test_build_loss_leaves_the_spec_unchanged():
    spec = {"name": "sum", "terms": [{"name": "focal", "weight": 0.5, "gamma": 1.0}]}
    build_loss(spec)
    assert spec == {"name": "sum", "terms": [{"name": "focal", "weight": 0.5, "gamma": 1.0}]}


def test_built_sum_computes_the_weighted_sum():
    logits, target = random_batch(seed=5)
    loss = build_loss({"name": "sum", "terms": [{"name": "cross_entropy", "weight": 2.0},
                                                {"name": "focal", "gamma": 0.0, "weight": 0.5}]})
    ce = F.cross_entropy(logits, target, ignore_index=VOID)
    assert loss(logits, target).item() == pytest.approx(2.5 * ce.item(), abs=1e-9)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("crossentropy", ValueError, r"unknown loss 'crossentropy' \(did you mean 'cross_entropy'\?\); known "
                                     "losses: aux, boundary, cross_entropy, dice, focal"),
        ({"gamma": 2}, ValueError, "has no 'name'"),
        (3, TypeError, "must be a name or a dict"),
        ({"name": "focal", "gama": 2}, ValueError,
         r"loss \('focal'\): loss 'focal' has no option 'gama' \(did you mean 'gamma'\?\); its options: "
         "gamma, alpha, ignore_index"),
        ({"name": "focal", "gamma": "2"}, TypeError,
         r"loss \('focal'\): argument 'gamma' should be a number"),
        ({"name": "dice", "log_loss": 1}, TypeError, "argument 'log_loss' should be bool"),
        ({"name": "dice", "classes": [0, 1.5]}, TypeError, "argument 'classes'"),
        ({"name": "top_k", "top_k_percent_pixels": 1.5}, ValueError, r"\('top_k'\).*\(0, 1\]"),
        ({"name": "sum", "terms": [{"name": "focal", "weight": "x"}]}, TypeError,
         r"terms\[0\]: 'weight' must be a number"),
        ({"name": "sum", "terms": ["dice", {"name": "focal", "gama": 1}]}, ValueError,
         r"loss \('sum'\)\.terms\[1\] \('focal'\): loss 'focal' has no option 'gama'"),
        ({"name": "sum"}, ValueError, "missing required argument"),
        ({"name": "aux", "loss": {"name": "nope"}}, ValueError, r"loss \('aux'\)\.loss: unknown loss 'nope'"),
        ({"name": "aux"}, ValueError, "missing required argument"),
        ({"name": "multiscale", "loss": "dice", "resize": "up"}, TypeError, "argument 'resize'"),
    ],
)
def test_build_loss_rejects_bad_specs_clearly(spec, error, message):
    with pytest.raises(error, match=message):
        build_loss(spec)
