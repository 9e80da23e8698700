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


def write_image(path, seed, size=(5, 7)):
    """A random RGB image (PNG) of `size` (H, W) without a mask; returns the array."""
    image = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return image


@pytest.mark.parametrize("layout", ["images+masks", "data+labels"])
def test_a_split_without_masks_needs_masks_optional(tmp_path, layout):
    """images/ alone, or data/test/ without labels/test/: refused by default, (image, None) with
    masks="optional"; the pixels are those of the files read with Pillow."""
    if layout == "images+masks":
        root, split, image_dir = tmp_path / "test", None, tmp_path / "test" / "images"
    else:
        root, split, image_dir = tmp_path, "test", tmp_path / "data" / "test"
        write_pair(tmp_path / "data/train/t.png", tmp_path / "labels/train/t.png", seed=5)
    expected = {stem: write_image(image_dir / f"{stem}.png", seed) for seed, stem in enumerate(["q", "p"])}
    with pytest.raises(FileNotFoundError, match=r"mask folder .* not found.*masks='optional'"):
        FolderDataset(root, split)
    dataset = FolderDataset(root, split, masks="optional")
    assert dataset.layout == layout and dataset.has_masks is False and dataset.ids == ["p", "q"]
    assert "no masks" in repr(dataset)
    for index, stem in enumerate(dataset.ids):
        image, mask = dataset[index]
        assert mask is None and dataset.mask_path(index) is None and dataset.sample(index).mask is None
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected[stem])
        torch.testing.assert_close(dataset.image(index), image, rtol=0, atol=0)
    # transforms are called with the image alone, as VOCSegmentation does for a split without masks
    flipped = FolderDataset(root, split, transforms=lambda image: image.flip(-1), masks="optional")
    np.testing.assert_array_equal(flipped[0][0].permute(1, 2, 0).numpy(), expected["p"][:, ::-1])
    # an empty mask folder is a split without masks too
    (image_dir.parent / "masks" if layout == "images+masks" else tmp_path / "labels" / "test").mkdir()
    with pytest.raises(ValueError, match=r"images without a mask .*p, q.*masks='optional'"):
        FolderDataset(root, split)
    assert FolderDataset(root, split, masks="optional").has_masks is False


def test_masks_optional_still_reads_the_masks_that_are_there(tmp_path):
    expected = write_pair(tmp_path / "images/a.png", tmp_path / "masks/a.png", seed=3)
    dataset = FolderDataset(tmp_path, masks="optional")
    assert dataset.has_masks is True
    np.testing.assert_array_equal(dataset[0][1].numpy(), expected[1])
    write_image(tmp_path / "images/b.png", seed=4)  # one image without its mask: always an error
    with pytest.raises(ValueError, match=r"images without a mask in .*masks: b$"):
        FolderDataset(tmp_path, masks="optional")
    # masks=<folder>: the masks read from another folder (every one required)
    other = {"a": np.full((6, 9), 2, np.uint8), "b": np.full((5, 7), 3, np.uint8)}  # the images' sizes
    (tmp_path / "other").mkdir()
    for stem, mask in other.items():
        write_mask(tmp_path / "other" / f"{stem}.png", mask)
    relabelled = FolderDataset(tmp_path, masks=tmp_path / "other")
    assert relabelled.mask_dir == tmp_path / "other"
    for index, stem in enumerate(relabelled.ids):
        np.testing.assert_array_equal(relabelled[index][1].numpy(), other[stem])
    with pytest.raises(FileNotFoundError, match="mask folder .*none_here not found"):
        FolderDataset(tmp_path, masks=tmp_path / "none_here")
    with pytest.raises(ValueError, match="masks must be one of 'required', 'optional', 'none' or a folder"):
        FolderDataset(tmp_path, masks=True)


def test_masks_none_reads_the_images_only_even_with_some_masks_missing(tmp_path):
    expected = {stem: write_pair(tmp_path / f"images/{stem}.png", tmp_path / f"masks/{stem}.png", seed=i)
                for i, stem in enumerate(["a", "b", "c"])}
    (tmp_path / "masks" / "b.png").unlink()  # a split with one mask missing: an error when masks are read
    with pytest.raises(ValueError, match="b"):
        FolderDataset(tmp_path)
    dataset = FolderDataset(tmp_path, masks="none")
    assert dataset.has_masks is False and dataset.mask_path(0) is None
    for index, stem in enumerate(dataset.ids):
        image, mask = dataset[index]
        assert mask is None
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected[stem][0])
