"""segkit.inference against independent references: per-pixel models, hand-computed window averages,
hand-made flips and hand-computed multi-scale averages."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.inference import predict_labels, predict_probs, sliding_window_probs, window_starts


def pixelwise_model(num_classes: int = 4, seed: int = 0) -> nn.Module:
    """A 1x1 convolution: each output pixel depends only on the same input pixel (translation-equivariant)."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, num_classes, kernel_size=1)


class WindowPositionModel(nn.Module):
    """Two classes; P(class 1) at column j of the window is ramp[j], whatever the image content.

    Its output depends on the position inside the window, so averaging overlapping windows is visible.
    """

    def __init__(self, ramp: list[float]):
        super().__init__()
        self.ramp = torch.tensor(ramp)

    def forward(self, images):
        n, _, h, w = images.shape
        assert w == len(self.ramp), "the test feeds windows of exactly len(ramp) columns"
        p1 = self.ramp.expand(n, h, w)
        return torch.stack([torch.log(1 - p1), torch.log(p1)], dim=1)  # softmax gives (1 - p1, p1)


class SizeModel(nn.Module):
    """Spatially constant logits (0, H / 4): the prediction depends on the input size only."""

    def forward(self, images):
        n, _, h, w = images.shape
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = h / 4
        return logits


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_window_starts_cover_the_axis_and_end_at_the_border():
    assert window_starts(6, 4, 2) == [0, 2]
    assert window_starts(7, 4, 2) == [0, 2, 3]
    assert window_starts(4, 4, 3) == [0]
    assert window_starts(10, 3, 3) == [0, 3, 6, 7]


@pytest.mark.parametrize(
    "size, window, stride", [((13, 17), 8, 5), ((8, 8), 8, 8), ((16, 9), (6, 4), (3, 2))]
)
def test_sliding_window_equals_whole_image_for_a_pixelwise_model(size, window, stride):
    model = pixelwise_model().eval()
    images = torch.randn(2, 3, *size)
    expected = torch.softmax(model(images), dim=1)
    got = predict_probs(model, images, window=window, stride=stride)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "replicate"])
def test_image_smaller_than_the_window_is_padded_then_cropped(pad_mode):
    model = pixelwise_model().eval()
    images = torch.randn(1, 3, 5, 6)
    expected = torch.softmax(model(images), dim=1)
    got = sliding_window_probs(model, images, window=8, stride=4, pad_mode=pad_mode)
    assert got.shape == (1, 4, 5, 6)
    torch.testing.assert_close(got, expected)


def test_constant_padding_is_zero_in_normalised_space():
    seen = []

    class Recorder(nn.Module):
        def forward(self, images):
            seen.append(images.clone())
            return torch.zeros(images.shape[0], 2, *images.shape[-2:])

    images = torch.ones(1, 3, 2, 3)
    sliding_window_probs(Recorder(), images, window=4)
    padded = seen[0]
    assert padded.shape == (1, 3, 4, 4)
    assert torch.equal(padded[:, :, :2, :3], images)
    assert padded[:, :, 2:].abs().sum() == 0 and padded[:, :, :, 3:].abs().sum() == 0


def test_overlapping_windows_are_averaged_by_hand():
    # Width 6, window 4, stride 2: windows cover columns 0-3 and 2-5.
    ramp = [0.1, 0.2, 0.3, 0.4]
    model = WindowPositionModel(ramp)
    got = sliding_window_probs(model, torch.zeros(1, 3, 4, 6), window=4, stride=2)
    expected_p1 = [0.1, 0.2, (0.3 + 0.1) / 2, (0.4 + 0.2) / 2, 0.3, 0.4]
    torch.testing.assert_close(got[0, 1], torch.tensor(expected_p1).expand(4, 6))
    torch.testing.assert_close(got.sum(dim=1), torch.ones(1, 4, 6))

    # Width 7: windows start at 0, 2 and 3 (the last one is moved back to end at the border).
    got = sliding_window_probs(model, torch.zeros(1, 3, 4, 7), window=4, stride=2)
    expected_p1 = [
        0.1,
        0.2,
        (0.3 + 0.1) / 2,
        (0.4 + 0.2 + 0.1) / 3,
        (0.3 + 0.2) / 2,
        (0.4 + 0.3) / 2,
        0.4,
    ]
    torch.testing.assert_close(got[0, 1], torch.tensor(expected_p1).expand(4, 7))


def test_flip_tta_is_the_mean_of_plain_and_mirrored_predictions():
    torch.manual_seed(1)
    model = nn.Conv2d(3, 5, kernel_size=3, padding=1).eval()  # not mirror-symmetric
    images = torch.randn(2, 3, 7, 9)
    plain = torch.softmax(model(images), 1)
    mirrored = torch.flip(torch.softmax(model(torch.flip(images, dims=[3])), 1), dims=[3])
    got = predict_probs(model, images, flip=True)
    torch.testing.assert_close(got, (plain + mirrored) / 2)


def test_flip_tta_equals_plain_for_a_symmetric_input_and_a_pixelwise_model():
    model = pixelwise_model().eval()
    half = torch.randn(1, 3, 6, 4)
    images = torch.cat([half, torch.flip(half, dims=[3])], dim=3)  # mirror-symmetric
    torch.testing.assert_close(predict_probs(model, images, flip=True), predict_probs(model, images))


def test_single_scale_one_equals_plain_inference():
    torch.manual_seed(2)
    model = nn.Conv2d(3, 3, kernel_size=3, padding=1).eval()
    images = torch.randn(1, 3, 10, 12)
    expected = torch.softmax(model(images), 1)
    torch.testing.assert_close(predict_probs(model, images, scales=[1.0]), expected)


def test_two_scales_average_probabilities_not_logits():
    # SizeModel: logit of class 1 is H/4, so at H=8 it is 2 and at H=4 (scale 0.5) it is 1.
    got = predict_probs(SizeModel(), torch.zeros(1, 3, 8, 8), scales=[0.5, 1.0])
    expected_p1 = (sigmoid(1.0) + sigmoid(2.0)) / 2
    assert got.shape == (1, 2, 8, 8)
    torch.testing.assert_close(got[0, 1], torch.full((8, 8), expected_p1))
    assert abs(expected_p1 - sigmoid(1.5)) > 1e-3  # averaging logits would give a different answer


def test_multiscale_matches_a_resize_reference():
    torch.manual_seed(3)
    model = nn.Conv2d(3, 4, kernel_size=3, padding=1).eval()
    images = torch.randn(1, 3, 12, 16)

    def reference(scale):
        size = (round(12 * scale), round(16 * scale))
        scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        probs = torch.softmax(model(scaled), 1)
        return F.interpolate(probs, size=(12, 16), mode="bilinear", align_corners=False)

    expected = (reference(0.5) + reference(1.5)) / 2
    torch.testing.assert_close(predict_probs(model, images, scales=[0.5, 1.5]), expected)


def test_labels_are_the_argmax_and_the_model_mode_is_restored():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    model.train()
    images = torch.randn(2, 3, 6, 6)
    labels = predict_labels(model, images, flip=True, window=4, stride=2)
    assert model.training
    model.eval()
    assert labels.dtype == torch.int64 and labels.shape == (2, 6, 6)
    assert torch.equal(labels, predict_probs(model, images, flip=True, window=4, stride=2).argmax(1))


def test_dict_outputs_use_out():
    class AuxModel(nn.Module):
        def forward(self, images):
            logits = torch.zeros(images.shape[0], 2, *images.shape[-2:])
            logits[:, 1] = 1.0
            return {"out": logits, "aux": -logits}

    got = predict_probs(AuxModel(), torch.zeros(1, 3, 3, 3))
    torch.testing.assert_close(got[0, 1], torch.full((3, 3), sigmoid(1.0)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window": 4, "stride": 5}, "larger than window"),
        ({"window": 0}, "window must be a positive integer"),
        ({"window": 4, "pad_mode": "wrap"}, "pad_mode must be one of"),
        ({"scales": []}, "scales must be a non-empty list"),
        ({"scales": [1.0, -0.5]}, "scales must be a non-empty list"),
        ({"window": 16, "pad_mode": "reflect"}, "cannot pad an image"),
    ],
)
def test_bad_options_fail_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_probs(pixelwise_model(), torch.zeros(1, 3, 5, 5), **kwargs)


def test_wrong_model_output_is_reported():
    with pytest.raises(ValueError, match="same resolution"):
        predict_probs(nn.Conv2d(3, 2, kernel_size=3), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        predict_probs(pixelwise_model(), torch.zeros(3, 5, 5))
