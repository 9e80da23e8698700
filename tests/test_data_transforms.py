"""The v2 augmentation presets keep image and mask aligned, pad the mask with void, resize masks with
nearest neighbour, and normalise exactly like (x / 255 - mean) / std. The train preset normalises last
(after padding with the mean colour, cropping and flipping) and gives bit for bit what the classic order
(normalise, pad with 0, crop, flip) gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from segkit.data import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, train_transforms

# Label k is painted with COLOURS[k]; void (255) is painted white. Saturated colours, far from each other
# and from the ImageNet mean colour that padding produces.
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)])
VOID_COLOUR = (255, 255, 255)
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def label_coded_sample(height=40, width=56, block=8, seed=0):
    """An image of blocks whose colour encodes the block's label, and the mask of those labels."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(COLOURS), size=(height // block, width // block))
    blocks[rng.random(blocks.shape) < 0.1] = 255
    labels = np.kron(blocks, np.ones((block, block), dtype=np.int64))
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(COLOURS)] = COLOURS
    palette[255] = VOID_COLOUR
    image = palette[labels]  # (H, W, 3)
    return (
        tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
        tv_tensors.Mask(torch.from_numpy(labels)),
    )


def labels_from_image(normalised: torch.Tensor):
    """Undo Normalize, then give each pixel the label of the nearest colour; `pure` marks pixels that are
    (almost) exactly one of the colours, i.e. not blended across a block edge by the bilinear resize."""
    rgb = (normalised * STD + MEAN) * 255  # (3, h, w)
    candidates = torch.tensor(np.vstack([COLOURS, VOID_COLOUR]), dtype=torch.float32)  # (7, 3)
    distance = (rgb.permute(1, 2, 0)[..., None, :] - candidates).norm(dim=-1)  # (h, w, 7)
    nearest_distance, nearest = distance.min(dim=-1)
    labels = torch.where(nearest == len(COLOURS), 255, nearest)
    return labels, nearest_distance < 12


def test_image_and_mask_stay_aligned_through_scale_crop_and_flips():
    image, mask = label_coded_sample()
    transform = train_transforms(crop_size=(48, 48), scale_range=(0.5, 2.0), hflip=True, vflip=True,
                                 base_size=56)  # fmt: skip
    saw_padding = saw_flip = False
    for seed in range(40):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert out_image.dtype == torch.float32 and out_image.shape == (3, 48, 48)
        assert out_mask.dtype == torch.int64 and out_mask.shape == (48, 48)
        assert isinstance(out_mask, tv_tensors.Mask)
        padded = (out_image == 0).all(dim=0)
        assert (out_mask[padded] == 255).all(), f"seed {seed}: padding must be void in the mask"
        derived, pure = labels_from_image(out_image)
        checked = pure & ~padded
        assert checked.sum() > 0.2 * (~padded).sum(), f"seed {seed}: too few pixels to compare"
        assert torch.equal(out_mask[checked], derived[checked]), f"seed {seed}: image and mask disagree"
        # The test has power: the same comparison fails when the mask is flipped without the image.
        if (out_mask != out_mask.flip(-1))[checked].any():
            assert not torch.equal(out_mask.flip(-1)[checked], derived[checked])
            saw_flip = True
        saw_padding |= bool(padded.any())
    assert saw_padding and saw_flip


def test_mask_is_resized_with_nearest_neighbour_and_image_bilinear():
    image, mask = label_coded_sample(height=40, width=56)
    transform = train_transforms(crop_size=(80, 112), scale_range=(2.0, 2.0), hflip=False, base_size=56)
    out_image, out_mask = transform(image, mask)
    expected_mask = F.interpolate(mask[None, None].float(), size=(80, 112), mode="nearest")[0, 0].long()
    assert torch.equal(out_mask.as_subclass(torch.Tensor), expected_mask)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # no invented class values
    expected_image = F.interpolate(image[None].float(), size=(80, 112), mode="bilinear", antialias=True,
                                   align_corners=False)[0].round().clamp(0, 255)  # fmt: skip
    reference = (expected_image / 255 - MEAN) / STD
    one_grey_level = 1.01 / 255 / min(IMAGENET_STD)
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), reference, atol=one_grey_level, rtol=0)


def test_crop_larger_than_image_pads_mask_with_void_and_image_with_the_mean():
    image, mask = label_coded_sample(height=40, width=56)
    mask = tv_tensors.Mask(torch.where(mask == 255, 0, mask))  # no void in the original
    transform = train_transforms(crop_size=(64, 80), scale_range=(1.0, 1.0), hflip=False, base_size=56)
    normalised = eval_transforms()(image)
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        inside = out_mask != 255
        assert (out_mask == 255).sum() == 64 * 80 - 40 * 56
        rows, cols = torch.nonzero(inside, as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        assert (int(rows.max()) - top + 1, int(cols.max()) - left + 1) == (40, 56)
        assert torch.equal(out_mask[top : top + 40, left : left + 56], mask.as_subclass(torch.Tensor))
        torch.testing.assert_close(out_image[:, top : top + 40, left : left + 56], normalised)
        assert (out_image[:, ~inside] == 0).all()  # 0 after Normalize = the mean colour


def classic_train_chain(crop_hw, scale_range, hflip, vflip, mean, std, base_size):
    """The reference: the DeepLab / torchvision-reference order, straight from v2 — normalise the whole
    scaled image, then pad with 0 (the mean colour after Normalize) and 255, crop, flip."""
    steps = [
        v2.ScaleJitter(target_size=(base_size, base_size), scale_range=scale_range, antialias=True),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.RandomCrop(crop_hw, pad_if_needed=True, fill={tv_tensors.Image: 0.0, tv_tensors.Mask: 255}),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if vflip:
        steps.append(v2.RandomVerticalFlip(p=0.5))
    return v2.Compose(steps)


def noise_sample(height, width, seed):
    """Random uint8 pixels (every value differs from its neighbours, so any shift or flip shows) and a
    random mask of 21 classes with some void."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    mask = torch.randint(0, 21, (height, width), generator=generator)
    mask[torch.rand(height, width, generator=generator) < 0.1] = 255
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bits (a float32 compared as int32 also tells -0.0 from 0.0)."""
    a, b = a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.float32:
        a, b = a.view(torch.int32), b.view(torch.int32)
    return torch.equal(a, b)


@pytest.mark.parametrize("vflip", [False, True])
@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), ((0.3, 0.55, 0.7), (0.2, 0.4, 0.35))])
@pytest.mark.parametrize(
    "image_hw, crop_hw, base_size, padded",
    [((30, 44), (48, 56), 44, True),  # scaled image at most 60 x 88 at s = 2, often smaller than the crop
     ((90, 120), (24, 40), 120, False)],  # at s = 0.5 still 45 x 60: never padded
)  # fmt: skip
def test_train_transforms_equal_the_classic_order_bit_for_bit(image_hw, crop_hw, base_size, padded, vflip,
                                                              mean, std):  # fmt: skip
    image, mask = noise_sample(*image_hw, seed=len(mean) + image_hw[0])
    options = dict(crop_hw=crop_hw, scale_range=(0.5, 2.0), hflip=True, vflip=vflip, mean=mean, std=std,
                   base_size=base_size)  # fmt: skip
    reference = classic_train_chain(**options)
    options["crop_size"] = options.pop("crop_hw")
    transform = train_transforms(**options)
    padded_draws = 0
    for seed in range(60):
        torch.manual_seed(seed)
        expected_image, expected_mask = reference(image, mask)
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert same_bits(out_image, expected_image), f"seed {seed}: image differs from the classic order"
        assert same_bits(out_mask, expected_mask), f"seed {seed}: mask differs from the classic order"
        assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        padded_draws += bool((expected_image == 0).all(dim=0).any())
    # The cases cover what they claim: padding in most draws of the small image, never in the large one.
    assert (padded_draws > 30) if padded else (padded_draws == 0)


def test_padding_is_exactly_zero_in_the_image_and_void_in_the_mask_with_any_mean():
    image, mask = noise_sample(20, 30, seed=3)
    mask = tv_tensors.Mask(torch.where(mask == 255, 7, mask))  # no void in the original
    mean, std = (0.3, 0.55, 0.7), (0.2, 0.4, 0.35)
    transform = train_transforms(crop_size=(32, 40), scale_range=(1.0, 1.0), hflip=False, mean=mean, std=std,
                                 base_size=30)  # fmt: skip
    by_hand = (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        padding = out_mask == 255
        assert int(padding.sum()) == 32 * 40 - 20 * 30
        assert (out_image[:, padding] == 0.0).all() and not torch.signbit(out_image[:, padding]).any()
        rows, cols = torch.nonzero(~padding, as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        assert torch.equal(out_mask[top : top + 20, left : left + 30], mask)
        torch.testing.assert_close(out_image[:, top : top + 20, left : left + 30], by_hand)


@pytest.mark.parametrize("hflip, vflip", [(False, True), (True, False), (False, False)])
def test_flip_options(hflip, vflip):
    image, mask = label_coded_sample()
    transform = train_transforms(crop_size=(40, 56), scale_range=(1.0, 1.0), hflip=hflip, vflip=vflip,
                                 base_size=56)  # fmt: skip
    normalised = eval_transforms()(image)
    flip_dim = -2 if vflip else -1
    outcomes = set()
    for seed in range(16):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        if torch.equal(out_mask, mask):
            torch.testing.assert_close(out_image, normalised)
            outcomes.add("same")
        else:
            assert torch.equal(out_mask, mask.flip(flip_dim)), "only the requested flip may happen"
            torch.testing.assert_close(out_image, normalised.flip(flip_dim))
            outcomes.add("flipped")
    assert outcomes == ({"same", "flipped"} if hflip or vflip else {"same"})


def test_scale_is_relative_to_the_image():
    image, mask = label_coded_sample(height=40, width=56)
    mask = tv_tensors.Mask(torch.where(mask == 255, 0, mask))  # every pixel labelled: extent = image size
    for scale in (0.5, 1.5):
        transform = train_transforms(crop_size=200, scale_range=(scale, scale), hflip=False, base_size=56)
        _, out_mask = transform(image, mask)
        rows = torch.nonzero((out_mask != 255).any(dim=1)).flatten()
        cols = torch.nonzero((out_mask != 255).any(dim=0)).flatten()
        assert int(rows.max() - rows.min() + 1) == int(40 * scale)
        assert int(cols.max() - cols.min() + 1) == int(56 * scale)


def test_eval_transforms_equal_normalisation_by_hand():
    image, mask = label_coded_sample()
    out_image, out_mask = eval_transforms()(image, mask)
    by_hand = (image.float() / 255 - MEAN) / STD
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), by_hand.as_subclass(torch.Tensor))
    assert out_mask.dtype == torch.int64 and torch.equal(out_mask, mask)
    alone = eval_transforms(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(image)  # image only: prediction
    torch.testing.assert_close(alone.as_subclass(torch.Tensor), (image.float() / 255 - 0.5) / 0.25)


def test_bad_scale_range_is_rejected():
    with pytest.raises(ValueError, match="scale_range"):
        train_transforms(crop_size=32, scale_range=(2.0, 0.5))
