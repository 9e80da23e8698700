"""FolderDataset on its two layouts, checked against the files read directly with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from segkit.data import FolderDataset, write_mask


def write_pair(image_path, mask_path, seed, size=(6, 9)):
    """A random RGB image and mask of `size` (H, W); returns both arrays."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, size=size).astype(np.uint8)
    mask[0, :] = 255
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)  # PNG or BMP: lossless, so pixels compare exactly
    write_mask(mask_path, mask)
    return image, mask


def test_images_and_masks_layout(tmp_path):
    expected = {
        "b_cat": write_pair(tmp_path / "images/b_cat.png", tmp_path / "masks/b_cat.png", seed=1),
        "a_dog": write_pair(tmp_path / "images/a_dog.bmp", tmp_path / "masks/a_dog.png", seed=2, size=(5, 7)),
    }
    (tmp_path / "images" / "notes.txt").write_text("ignored: not an image")
    dataset = FolderDataset(tmp_path, transforms=None)
    assert dataset.layout == "images+masks" and dataset.ids == ["a_dog", "b_cat"] and len(dataset) == 2
    for index, stem in enumerate(dataset.ids):
        image, mask = dataset[index]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected[stem][0])
        np.testing.assert_array_equal(mask.numpy(), expected[stem][1])
        assert dataset.image_path(index).stem == dataset.mask_path(index).stem == stem
    assert dataset.num_classes == 21


def test_data_labels_layout_with_splits(tmp_path):
    train = {s: write_pair(tmp_path / f"data/train/{s}.png", tmp_path / f"labels/train/{s}.png", seed=i)
             for i, s in enumerate(["x0", "x1", "x2"])}  # fmt: skip
    write_pair(tmp_path / "data/val/y0.png", tmp_path / "labels/val/y0.png", seed=9)
    dataset = FolderDataset(tmp_path, split="train", classes=("background", "a", "b", "c"))
    assert dataset.layout == "data+labels" and dataset.ids == ["x0", "x1", "x2"] and dataset.num_classes == 4
    for index, stem in enumerate(dataset.ids):
        image, mask = dataset[index]
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), train[stem][0])
        np.testing.assert_array_equal(mask.numpy(), train[stem][1])
    assert FolderDataset(tmp_path, split="val").ids == ["y0"]
    with pytest.raises(ValueError, match=r"split=.*\['train', 'val'\].*'test'"):
        FolderDataset(tmp_path, split="test")
    with pytest.raises(ValueError, match=r"\['train', 'val'\]"):
        FolderDataset(tmp_path)


def test_unmatched_stems_are_named(tmp_path):
    write_pair(tmp_path / "images/common.png", tmp_path / "masks/common.png", seed=0)
    write_pair(tmp_path / "images/lonely_image.jpg", tmp_path / "masks/tmp.png", seed=1)
    (tmp_path / "masks/tmp.png").rename(tmp_path / "masks/orphan_mask.png")
    with pytest.raises(ValueError) as error:
        FolderDataset(tmp_path)
    message = str(error.value)
    assert "lonely_image" in message and "orphan_mask" in message and "common" not in message


def test_transforms_and_layout_errors(tmp_path):
    write_pair(tmp_path / "images/a.png", tmp_path / "masks/a.png", seed=0)
    flipped = FolderDataset(tmp_path, transforms=lambda image, mask: (image.flip(-1), mask.flip(-1)))
    plain = FolderDataset(tmp_path)
    assert torch.equal(flipped[0][1], plain[0][1].flip(-1))
    with pytest.raises(ValueError, match="no splits"):
        FolderDataset(tmp_path, split="train")
    (tmp_path / "images/a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"stem 'a'"):
        FolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither images"):
        FolderDataset(tmp_path / "masks")
    with pytest.raises(FileNotFoundError, match="not_there"):
        FolderDataset(tmp_path / "not_there")


def test_corrupt_file_is_named(tmp_path):
    write_pair(tmp_path / "images/a.png", tmp_path / "masks/a.png", seed=0)
    (tmp_path / "images/a.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"FolderDataset .*images/a\.png"):
        FolderDataset(tmp_path)[0]
