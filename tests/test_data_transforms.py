"""The v2 augmentation presets keep image and mask aligned, pad the mask with void, resize masks with
nearest neighbour, and normalise exactly like (x / 255 - mean) / std."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors

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
