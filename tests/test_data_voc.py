"""segkit.data.VOCSegmentation against torchvision.datasets.VOCSegmentation, and its error messages."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.datasets import VOCSegmentation as TorchvisionVOC

from segkit.data import VOCSegmentation, make_shapes, read_mask, write_mask


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    """A tiny shapes set (8/4/4 images of 64x64); tests must not modify it."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, seed=0, size=64, n_train=8, n_val=4, n_test=4)
    return root


@pytest.fixture
def shapes_copy(shapes_root, tmp_path):
    """A private copy of the tiny shapes set that a test may damage."""
    return shutil.copytree(shapes_root, tmp_path / "copy")


@pytest.mark.parametrize("split", ["train", "val", "trainval"])
def test_same_samples_as_torchvision(shapes_root, split):
    ours = VOCSegmentation(shapes_root, split=split)
    reference = TorchvisionVOC(str(shapes_root), year="2012", image_set=split, download=False)
    assert len(ours) == len(reference) > 0
    assert [p.name for p in map(ours.image_path, range(len(ours)))] == [
        p.split("/")[-1] for p in reference.images
    ]
    for index in range(len(ours)):
        image, mask = ours[index]
        ref_image, ref_mask = reference[index]  # PIL RGB image, PIL palette mask
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
        assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64 and mask.ndim == 2
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), np.asarray(ref_image))
        assert ref_mask.mode == "P"
        np.testing.assert_array_equal(mask.numpy(), np.asarray(ref_mask))
    assert ours.classes[0] == "background" and ours.num_classes == 21


def test_test_split_has_no_masks_in_voc_layout(shapes_root, tmp_path):
    # torchvision only knows train/val/trainval for 2012 and needs a SegmentationClass png per id.
    with pytest.raises(ValueError):
        TorchvisionVOC(str(shapes_root), year="2012", image_set="test", download=False)
    # segkit: an explicit error by default ...
    with pytest.raises(FileNotFoundError, match=r"split 'test'.*mask.*masks='optional'"):
        VOCSegmentation(shapes_root, split="test")
    # ... images only on request (prediction) ...
    unlabelled = VOCSegmentation(shapes_root, split="test", masks="optional")
    assert unlabelled.has_masks is False and len(unlabelled) == 4 and unlabelled.mask_path(0) is None
    image, mask = unlabelled[0]
    assert mask is None
    with Image.open(shapes_root / "VOCdevkit/VOC2012/JPEGImages/test_0000.jpg") as pil:
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), np.asarray(pil.convert("RGB")))
    # ... and masks kept in another folder are readable with masks=<folder> (here: the masks of the same
    # seed's test split, drawn apart as a competition's set-up draws its own)
    from segkit.data.shapes import make_hidden_test_set

    make_hidden_test_set(tmp_path / "pack", tmp_path / "masks", seed=0, size=64, n_test=4)
    scored = VOCSegmentation(shapes_root, split="test", masks=tmp_path / "masks")
    assert scored.has_masks
    for index in range(len(scored)):
        expected = np.asarray(Image.open(tmp_path / "masks" / f"{scored.ids[index]}.png"))
        np.testing.assert_array_equal(scored[index][1].numpy(), expected)


def test_transforms_are_applied_to_image_and_mask(shapes_root):
    calls = []

    def record(image, mask=None):
        calls.append((image.shape, None if mask is None else mask.shape))
        return image.flip(-1), None if mask is None else mask.flip(-1)

    flipped = VOCSegmentation(shapes_root, split="val", transforms=record)
    plain = VOCSegmentation(shapes_root, split="val")
    image, mask = flipped[1]
    np.testing.assert_array_equal(mask.numpy(), plain[1][1].numpy()[:, ::-1])
    np.testing.assert_array_equal(image.numpy(), plain[1][0].numpy()[:, :, ::-1])
    assert calls == [((3, 64, 64), (64, 64))]


def test_root_may_be_parent_devkit_or_voc2012_or_data_root(shapes_root, monkeypatch):
    expected = VOCSegmentation(shapes_root, split="val").ids
    for root in (shapes_root, shapes_root / "VOCdevkit", shapes_root / "VOCdevkit" / "VOC2012"):
        dataset = VOCSegmentation(root, split="val")
        assert dataset.ids == expected and dataset.root == shapes_root / "VOCdevkit" / "VOC2012"
    monkeypatch.setenv("SEGKIT_DATA", str(shapes_root))
    assert VOCSegmentation(split="val").ids == expected
    # ids come straight from the split file
    lines = (shapes_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt").read_text().split()
    assert expected == lines


def test_missing_voc_explains_where_to_get_it_and_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError) as error:
        VOCSegmentation(tmp_path / "nowhere", split="train")
    message = str(error.value)
    for needed in ("host.robots.ox.ac.uk/pascal/VOC/voc2012", "torchvision.datasets.VOCSegmentation",
                   "SEGKIT_DATA", "data/", "VOCdevkit/VOC2012/", "JPEGImages", "SegmentationClass",
                   "ImageSets/Segmentation", str(tmp_path / "nowhere")):  # fmt: skip
        assert needed in message, needed
    monkeypatch.setenv("SEGKIT_DATA", str(tmp_path / "empty_data"))
    with pytest.raises(FileNotFoundError, match="empty_data"):
        VOCSegmentation(split="train")


def test_unknown_split_lists_the_available_ones(shapes_root):
    with pytest.raises(ValueError, match=r"'trian'.*test, train, trainval, val"):
        VOCSegmentation(shapes_root, split="trian")


def test_train_aug_reads_segmentation_class_aug(shapes_copy):
    voc = shapes_copy / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClassAug").mkdir()
    ids = ["train_0000", "train_0001", "val_0000"]
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids) + "\n")
    for image_id in ids:  # different labels from SegmentationClass, so we can tell which is read
        write_mask(voc / "SegmentationClassAug" / f"{image_id}.png", np.full((64, 64), 7, dtype=np.uint8))
    dataset = VOCSegmentation(shapes_copy, split="train_aug")
    assert dataset.ids == ids and dataset.mask_dir.name == "SegmentationClassAug"
    assert all((dataset[i][1] == 7).all() for i in range(3))
    assert VOCSegmentation(shapes_copy, split="train").mask_dir.name == "SegmentationClass"


def test_missing_image_names_the_file_and_split(shapes_copy):
    (shapes_copy / "VOCdevkit/VOC2012/JPEGImages/val_0002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"split 'val'.*val_0002\.jpg"):
        VOCSegmentation(shapes_copy, split="val")


def test_missing_mask_names_the_file_and_split_even_with_masks_optional(shapes_copy):
    (shapes_copy / "VOCdevkit/VOC2012/SegmentationClass/train_0005.png").unlink()
    for masks in ("required", "optional"):
        with pytest.raises(FileNotFoundError, match=r"split 'train'.*train_0005\.png"):
            VOCSegmentation(shapes_copy, split="train", masks=masks)


def test_masks_none_reads_the_images_only_even_with_a_mask_missing(shapes_copy):
    (shapes_copy / "VOCdevkit/VOC2012/SegmentationClass/train_0005.png").unlink()
    dataset = VOCSegmentation(shapes_copy, split="train", masks="none")
    assert dataset.has_masks is False and dataset.mask_path(5) is None
    image, mask = dataset[5]
    assert mask is None
    jpeg = Image.open(shapes_copy / "VOCdevkit/VOC2012/JPEGImages/train_0005.jpg").convert("RGB")
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), np.asarray(jpeg))


def test_corrupt_image_or_mask_names_the_file_and_split(shapes_copy):
    voc = shapes_copy / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages/val_0001.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    png = voc / "SegmentationClass/val_0003.png"
    png.write_bytes(png.read_bytes()[:50])
    dataset = VOCSegmentation(shapes_copy, split="val")
    dataset[0]  # untouched samples still load
    with pytest.raises(ValueError, match=r"split 'val'.*val_0001\.jpg"):
        dataset[1]
    with pytest.raises(ValueError, match=r"split 'val'.*val_0003\.png"):
        dataset[3]


def test_rgb_mask_and_size_mismatch_are_rejected(shapes_copy):
    voc = shapes_copy / "VOCdevkit" / "VOC2012"
    mask_path = voc / "SegmentationClass/val_0000.png"
    with Image.open(mask_path) as mask:
        mask.convert("RGB").save(mask_path)
    write_mask(voc / "SegmentationClass/val_0001.png", np.zeros((32, 64), dtype=np.uint8))
    dataset = VOCSegmentation(shapes_copy, split="val")
    with pytest.raises(ValueError, match=r"val_0000\.png.*'RGB'"):
        dataset[0]
    with pytest.raises(ValueError, match=r"val_0001\.jpg.*64x64.*val_0001\.png.*64x32"):
        dataset[1]
    assert read_mask(voc / "SegmentationClass/val_0002.png").shape == (64, 64)
