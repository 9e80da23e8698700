"""Exercises of sessions 1-3: every reference passes its own checker and agrees with an independent
computation (torchvision, torch layers, segkit.data statistics, a hand case); plausible wrong answers fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit.course.exercises import check, s01, s02, s03
from segkit.data import VOCSegmentation, colorize_mask, dataset_stats, make_shapes, read_mask, write_mask

NAMES = [
    "class_frequencies", "rgb_to_mask", "images_per_class",
    "joint_random_crop", "resize_mask_nearest", "window_starts",
    "make_double_conv", "conv_output_size", "receptive_field",
]  # fmt: skip
MODULES = {name: module for module in (s01, s02, s03) for name in NAMES if hasattr(module, name)}


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_its_own_checker(name, capsys):
    assert check(name, getattr(MODULES[name], name)) is True
    assert capsys.readouterr().out.startswith("✅")


# ------------------------------------------------------------------------- references vs independent ones


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = make_shapes(tmp_path_factory.mktemp("shapes"), size=40, n_train=6, n_val=1, n_test=1)
    return VOCSegmentation(root, "train")


def test_frequencies_and_image_counts_match_dataset_stats(tiny_shapes):
    masks = [read_mask(tiny_shapes.mask_path(i)) for i in range(len(tiny_shapes))]
    stats = dataset_stats(tiny_shapes)
    assert stats.void_pixels > 0  # the shapes masks have a void band, so void handling is exercised
    np.testing.assert_allclose(s01.class_frequencies(masks, 21), stats.frequencies)
    np.testing.assert_array_equal(s01.images_per_class(masks, 21), stats.image_counts)


def test_frequencies_by_hand():
    masks = [np.array([[0, 0, 255], [1, 255, 1]], np.uint8), np.array([[2, 255]], np.uint8)]
    np.testing.assert_allclose(s01.class_frequencies(masks, 4), [2 / 5, 2 / 5, 1 / 5, 0])
    np.testing.assert_array_equal(s01.class_frequencies([np.full((2, 2), 255, np.uint8)], 3), [0, 0, 0])
    np.testing.assert_array_equal(s01.images_per_class(masks, 4), [1, 1, 1, 0])


def test_rgb_to_mask_inverts_the_palette_png(tmp_path, tiny_shapes):
    path = tmp_path / "mask.png"
    mask = read_mask(tiny_shapes.mask_path(0))
    write_mask(path, mask)
    rgb = np.asarray(Image.open(path).convert("RGB"))  # what a viewer shows: colours, void cream-coloured
    np.testing.assert_array_equal(s01.rgb_to_mask(rgb), mask)
    np.testing.assert_array_equal(s01.rgb_to_mask(colorize_mask(mask)), mask)
    assert (mask == 255).any()


def test_rgb_to_mask_rejects_an_unknown_colour():
    rgb = colorize_mask(np.zeros((3, 4), np.uint8))
    rgb[1, 2] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) at pixel \(1, 2\)"):
        s01.rgb_to_mask(rgb)


@pytest.mark.parametrize(("height", "width", "size"), [(40, 50, 16), (10, 7, 16), (9, 40, 12), (12, 12, 12)])
def test_crop_reference_draws_what_torchvision_draws(height, width, size):
    image, mask = s02.encoded_sample(np.random.default_rng(height), height, width)
    crop = v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Image: 0.0, tv_tensors.Mask: 255})
    for seed in range(5):
        torch.manual_seed(seed)
        ours = s02.joint_random_crop(image, mask, size)
        torch.manual_seed(seed)
        theirs = crop(tv_tensors.Image(image), tv_tensors.Mask(mask))
        torch.testing.assert_close(ours[0], theirs[0].as_subclass(torch.Tensor))
        torch.testing.assert_close(ours[1], theirs[1].as_subclass(torch.Tensor))


def _floor_formula_agrees(in_size: int, out_size: int) -> bool:
    exact = torch.arange(out_size) * in_size // out_size
    float_based = F.interpolate(torch.arange(in_size).float()[None, None, :, None], size=(out_size, 1))
    return bool((float_based[0, 0, :, 0].long() == exact).all())


def test_resize_reference_is_torchvision_mask_resize():
    for _, (mask, size) in s02._resize_cases(np.random.default_rng(0)):
        theirs = v2.Resize(list(size))(tv_tensors.Mask(mask))
        torch.testing.assert_close(s02.resize_mask_nearest(mask, size), theirs.as_subclass(torch.Tensor))
        # the cases avoid the sizes where integer and floating-point floor differ, so both solutions pass
        assert _floor_formula_agrees(mask.shape[0], size[0]) and _floor_formula_agrees(mask.shape[1], size[1])


def test_window_starts_by_hand_and_coverage():
    assert s02.window_starts(7, 4, 2) == [0, 2, 3]
    assert s02.window_starts(10, 4, 3) == [0, 3, 6]
    assert s02.window_starts(64, 64, 32) == [0]
    for length, window, stride in [(500, 128, 96), (33, 10, 7), (100, 32, 32)]:
        covered = np.zeros(length, bool)
        for start in s02.window_starts(length, window, stride):
            covered[start : start + window] = True
        assert covered.all()


def test_double_conv_parameter_count_by_hand():
    for cin, cout in [(3, 8), (16, 4)]:
        block = s03.make_double_conv(cin, cout)
        assert sum(p.numel() for p in block.parameters()) == 9 * cin * cout + 9 * cout * cout + 4 * cout


def _torch_stack(layers, channels: int = 1) -> nn.Sequential:
    """The same stack as real layers: convolutions (all weights 1, no bias) or max-pools (2x2 stride 2)."""
    modules = []
    for kernel, stride, padding, dilation in layers:
        if (kernel, stride, padding, dilation) == s03.POOL:
            modules.append(nn.MaxPool2d(2))
        else:
            conv = nn.Conv2d(channels, channels, kernel, stride, padding, dilation, bias=False)
            nn.init.ones_(conv.weight)
            modules.append(conv)
    return nn.Sequential(*modules)


def test_output_size_matches_torch_layers():
    for _, (size, layers) in s03._size_cases(np.random.default_rng(1)):
        out = _torch_stack(layers)(torch.zeros(1, 1, size, size))
        assert out.shape[-1] == s03.conv_output_size(size, layers)


def test_receptive_field_matches_the_gradient_footprint():
    """The input pixels that can change one output pixel: where the gradient of that pixel is nonzero
    (positive weights, a positive input and average pooling instead of max pooling keep every path alive)."""
    for _, (layers,) in s03._field_cases(np.random.default_rng(2)):
        stack = _torch_stack(layers)
        stack = nn.Sequential(*[nn.AvgPool2d(2) if isinstance(m, nn.MaxPool2d) else m for m in stack])
        size = 4 * s03.receptive_field(layers) + 8
        x = torch.ones(1, 1, 1, size, requires_grad=True)
        flat = nn.Sequential(*[_as_1d(m) for m in stack])
        out = flat(x)
        out[0, 0, 0, out.shape[-1] // 2].backward()
        footprint = (x.grad[0, 0, 0] != 0).nonzero().flatten()
        assert footprint[-1] - footprint[0] + 1 == s03.receptive_field(layers)


def _as_1d(module: nn.Module) -> nn.Module:
    """The same layer acting along the width only (kernel 1 x k), so a 1 x n input works."""
    if isinstance(module, nn.AvgPool2d):
        return nn.AvgPool2d((1, 2))
    conv = nn.Conv2d(1, 1, (1, module.kernel_size[1]), (1, module.stride[1]), (0, module.padding[1]),
                     (1, module.dilation[1]), bias=False)  # fmt: skip
    nn.init.ones_(conv.weight)
    return conv


# ----------------------------------------------------------------------------------------- wrong answers


def freq_counting_void(masks, num_classes=21):
    """Void in the denominator: shares of all pixels, not of the labelled ones."""
    counts = sum(np.bincount(m.ravel(), minlength=256)[:num_classes] for m in masks)
    return counts / sum(m.size for m in masks)


def freq_averaged_per_image(masks, num_classes=21):
    """The mean of per-image shares: a small image weighs as much as a big one."""
    return np.mean([s01.class_frequencies([m], num_classes) for m in masks], axis=0)


def freq_nan_when_empty(masks, num_classes=21):
    labels = np.concatenate([m.ravel() for m in masks])
    labels = labels[labels != 255]
    with np.errstate(invalid="ignore"):
        return np.bincount(labels, minlength=num_classes)[:num_classes] / labels.size


def rgb_d2l_style(rgb, num_classes=21):
    """A lookup that knows only the 21 class colours: the void colour falls through to 0 (background)."""
    table = np.zeros(256**3, dtype=np.uint8)
    for index in range(num_classes):
        r, g, b = s01.VOC_PALETTE[index]
        table[(r * 256 + g) * 256 + b] = index
    rgb = rgb.astype(np.int64)
    return table[(rgb[..., 0] * 256 + rgb[..., 1]) * 256 + rgb[..., 2]]


def images_counting_pixels(masks, num_classes=21):
    return sum(np.bincount(m.ravel(), minlength=256)[:num_classes] for m in masks)


def crop_twice(image, mask, size):
    """Two independent random crops: image and mask get different windows."""
    crop_image = v2.RandomCrop(size, pad_if_needed=True, fill=0)
    crop_mask = v2.RandomCrop(size, pad_if_needed=True, fill=255)
    return crop_image(image), crop_mask(mask)


def _window(height, width, size):
    top = int(torch.randint(0, height - size + 1, ())) if height > size else 0
    left = int(torch.randint(0, width - size + 1, ())) if width > size else 0
    return top, left


def crop_mask_padded_with_zero(image, mask, size):
    """Pads the mask with 0: the padding becomes 'background' that the loss will learn from."""
    pad_h, pad_w = max(size - mask.shape[0], 0), max(size - mask.shape[1], 0)
    image, mask = F.pad(image, [0, pad_w, 0, pad_h]), F.pad(mask, [0, pad_w, 0, pad_h])
    top, left = _window(*mask.shape, size)
    return image[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]


def crop_off_by_one(image, mask, size):
    """The mask window is one pixel lower than the image window."""
    top, left = _window(mask.shape[0] - 1, mask.shape[1], size)
    return image[:, top : top + size, left : left + size], mask[top + 1 : top + 1 + size, left : left + size]


def crop_resize_instead(image, mask, size):
    """Resizes to size x size instead of cropping (nearest for both, so they stay aligned)."""
    image = F.interpolate(image[None], size=(size, size), mode="nearest")[0]
    mask = F.interpolate(mask[None, None].float(), size=(size, size), mode="nearest")[0, 0].long()
    return image, mask


def crop_always_pads(image, mask, size):
    """Pads every side by `size` even when the image is large enough, then crops: windows fall in padding."""
    image, mask = F.pad(image, [size] * 4), F.pad(mask, [size] * 4, value=255)
    top, left = _window(*mask.shape, size)
    return image[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]


def crop_flips_image_only(image, mask, size):
    image, mask = s02.joint_random_crop(image, mask, size)
    return image.flip(-1), mask


def resize_bilinear(mask, size):
    return F.interpolate(mask[None, None].float(), size=tuple(size), mode="bilinear")[0, 0].round().long()


def resize_nearest_returns_float(mask, size):
    return F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest")[0, 0]


def windows_with_range(length, window, stride):
    return list(range(0, length - window + 1, stride))


def _conv(cin, cout, **options):
    return nn.Conv2d(cin, cout, 3, **({"padding": 1, "bias": False} | options))


def double_conv_without_bn(cin, cout):
    return nn.Sequential(_conv(cin, cout), nn.ReLU(), _conv(cout, cout), nn.ReLU())


def double_conv_without_last_relu(cin, cout):
    return nn.Sequential(
        _conv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(), _conv(cout, cout), nn.BatchNorm2d(cout)
    )


def double_conv_without_middle_relu(cin, cout):
    return nn.Sequential(
        _conv(cin, cout), nn.BatchNorm2d(cout), _conv(cout, cout), nn.BatchNorm2d(cout), nn.ReLU()
    )


def double_conv_with_bias(cin, cout):
    return nn.Sequential(
        _conv(cin, cout, bias=True), nn.BatchNorm2d(cout), nn.ReLU(),
        _conv(cout, cout, bias=True), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


def double_conv_relu_before_bn(cin, cout):
    return nn.Sequential(
        _conv(cin, cout), nn.ReLU(), nn.BatchNorm2d(cout), _conv(cout, cout), nn.ReLU(), nn.BatchNorm2d(cout)
    )


def double_conv_unpadded(cin, cout):
    return nn.Sequential(
        _conv(cin, cout, padding=0), nn.BatchNorm2d(cout), nn.ReLU(),
        _conv(cout, cout, padding=0), nn.BatchNorm2d(cout), nn.ReLU(),
    )  # fmt: skip


def size_without_dilation(size, layers):
    for kernel, stride, padding, _ in layers:
        size = (size + 2 * padding - kernel) // stride + 1
    return size


def size_true_division(size, layers):
    for kernel, stride, padding, dilation in layers:
        size = round((size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1)
    return size


def field_without_strides(layers):
    return 1 + sum(d * (k - 1) for k, _, _, d in layers)


def field_without_dilation(layers):
    field, jump = 1, 1
    for kernel, stride, _, _ in layers:
        field, jump = field + (kernel - 1) * jump, jump * stride
    return field


WRONG_ANSWERS = [
    ("class_frequencies", freq_counting_void),
    ("class_frequencies", freq_averaged_per_image),
    ("class_frequencies", freq_nan_when_empty),
    ("rgb_to_mask", rgb_d2l_style),
    ("images_per_class", images_counting_pixels),
    ("joint_random_crop", crop_twice),
    ("joint_random_crop", crop_mask_padded_with_zero),
    ("joint_random_crop", crop_off_by_one),
    ("joint_random_crop", crop_resize_instead),
    ("joint_random_crop", crop_always_pads),
    ("joint_random_crop", crop_flips_image_only),
    ("resize_mask_nearest", resize_bilinear),
    ("resize_mask_nearest", resize_nearest_returns_float),
    ("window_starts", windows_with_range),
    ("make_double_conv", double_conv_without_bn),
    ("make_double_conv", double_conv_without_last_relu),
    ("make_double_conv", double_conv_without_middle_relu),
    ("make_double_conv", double_conv_with_bias),
    ("make_double_conv", double_conv_relu_before_bn),
    ("make_double_conv", double_conv_unpadded),
    ("conv_output_size", size_without_dilation),
    ("conv_output_size", size_true_division),
    ("receptive_field", field_without_strides),
    ("receptive_field", field_without_dilation),
]


@pytest.mark.parametrize(("name", "wrong"), WRONG_ANSWERS, ids=[w.__name__ for _, w in WRONG_ANSWERS])
def test_plausible_wrong_answer_fails(name, wrong, capsys):
    assert check(name, wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("❌") and "hint:" in out


def test_crop_messages_name_the_mistake(capsys):
    check("joint_random_crop", crop_twice)
    assert "not aligned" in capsys.readouterr().out
    check("joint_random_crop", crop_mask_padded_with_zero)
    assert "pad the mask with 255" in capsys.readouterr().out


def test_rgb_message_names_the_void_pixels(capsys):
    check("rgb_to_mask", rgb_d2l_style)
    out = capsys.readouterr().out
    assert "void pixels" in out and "came out as 0" in out


def rgb_without_refusal(rgb, num_classes=21):
    """The right lookup for every palette colour, but an unknown colour silently becomes 0."""
    table = np.zeros(256**3, dtype=np.uint8)
    for index in [*range(num_classes), 255]:
        r, g, b = s01.VOC_PALETTE[index]
        table[(r * 256 + g) * 256 + b] = index
    rgb = rgb.astype(np.int64)
    return table[(rgb[..., 0] * 256 + rgb[..., 1]) * 256 + rgb[..., 2]]


def crop_top_left(image, mask, size):
    """Pads like the reference, then always takes the window at (0, 0): never random."""
    pad_h, pad_w = max(size - mask.shape[0], 0), max(size - mask.shape[1], 0)
    image = F.pad(image, [pad_w, pad_w, pad_h, pad_h], value=0.0)
    mask = F.pad(mask, [pad_w, pad_w, pad_h, pad_h], value=255)
    return image[..., :size, :size], mask[:size, :size]


def crop_same_top_and_left(image, mask, size):
    """One random number for both corners: the window only moves along the diagonal."""
    height, width = mask.shape
    offset = int(torch.randint(0, min(height, width) - size + 1, ())) if min(height, width) > size else 0
    if height < size or width < size:
        return s02.joint_random_crop(image, mask, size)
    return image[..., offset : offset + size, offset : offset + size], mask[offset : offset + size,
                                                                            offset : offset + size]


@pytest.mark.parametrize(
    ("name", "wrong", "named_mistake"),
    [
        ("rgb_to_mask", rgb_without_refusal, "must be refused with ValueError"),
        ("joint_random_crop", crop_top_left, "your crop always started at row 0, column 0"),
        ("joint_random_crop", crop_same_top_and_left, "top always equalled its left"),
        ("class_frequencies", freq_averaged_per_image,
         "First failure, case 3 (two masks of different sizes (pool the pixels, do not average per image))"),
    ],
    ids=["rgb_no_valueerror", "crop_top_left", "crop_diagonal", "freq_per_image"],
)
def test_the_verdict_names_the_mistake(name, wrong, named_mistake, capsys):
    """Answers that once passed, or failed for an unrelated reason: each fails with the message written for
    its mistake."""
    assert check(name, wrong) is False
    out = capsys.readouterr().out
    assert named_mistake in out, out


def test_crop_randomness_check_reads_the_corner_of_each_draw():
    """The whole-function check accepts torchvision's RandomCrop (a uniform draw, independent of ours) and
    reports how many rows a crop limited to the top half reaches (by hand: tops 0..7 of 0..15)."""
    crop = v2.RandomCrop(9)
    assert s02.check_crop_is_random(lambda image, mask, size: tuple(
        t.as_subclass(torch.Tensor) for t in crop(tv_tensors.Image(image), tv_tensors.Mask(mask)))) is None

    def top_half(image, mask, size):
        top, left = int(torch.randint(0, 8, ())), int(torch.randint(0, 16, ()))
        return image[..., top : top + size, left : left + size], mask[top : top + size, left : left + size]

    message = s02.check_crop_is_random(top_half)
    assert "only 8 of the 16 possible rows and 16 of the 16 possible columns" in message


def test_named_attributes_block_is_accepted():
    """A block written as a class with named layers (not a Sequential) passes when it computes the same."""

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)

        def forward(self, x):
            return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))

    assert check("make_double_conv", Block) is True
