"""Lazy fields: a mask is decoded only when it is used, an image only when it is used.

Every file a dataset decodes goes through PIL.Image.open; the `opened` fixture (tests/conftest.py) records
the calls.
"""

from __future__ import annotations

import shutil
import zipfile
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from segkit.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOCSegmentation,
    contains_class,
    eval_transforms,
    filter_samples,
    make_shapes,
    map_samples,
    read_mask,
    subset,
    train_transforms,
)
from segkit.inference import write_submission

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, seed=0, size=32, n_train=8, n_val=3, n_test=4)
    return root



def by_suffix(opened: list) -> Counter:
    """Opens of .jpg files (images) and of .png files (masks)."""
    suffixes = [path.suffix for path in opened]
    return Counter({".jpg": suffixes.count(".jpg"), ".png": suffixes.count(".png")})


def test_the_counter_sees_both_files_of_an_item(shapes_root, opened):
    train = VOCSegmentation(shapes_root, "train")
    train[0]
    assert Counter(opened) == Counter({train.image_path(0): 1, train.mask_path(0): 1})


def test_each_field_opens_only_its_own_file_once(shapes_root, opened):
    train = VOCSegmentation(shapes_root, "train")
    sample = train.sample(2)
    assert not opened and sample.loaded == set()
    mask = sample.mask
    assert Counter(opened) == Counter({train.mask_path(2): 1}) and sample.loaded == {"mask"}
    assert sample.mask is mask  # kept, not decoded again
    image = sample.image
    assert Counter(opened) == Counter({train.mask_path(2): 1, train.image_path(2): 1})
    np.testing.assert_array_equal(mask.numpy(), read_mask(train.mask_path(2)))
    torch.testing.assert_close(image, train[2][0], rtol=0, atol=0)
    assert sample.id == train.ids[2]


def test_filtering_on_masks_never_decodes_an_image(shapes_root, opened):
    train = VOCSegmentation(shapes_root, "train")
    kept = filter_samples(subset(train, range(1, 8)), contains_class(7))
    assert by_suffix(opened) == Counter({".jpg": 0, ".png": 7})
    assert all(Counter(opened)[train.mask_path(i)] == 1 for i in range(1, 8))
    assert 0 < len(kept) < 7


def test_a_transformed_sample_draws_once_for_both_fields(shapes_root, opened):
    augmented = VOCSegmentation(shapes_root, "train", transforms=train_transforms(crop_size=24, base_size=32))
    torch.manual_seed(5)
    sample = augmented.sample(1)
    mask = sample.mask  # a random crop must see the image and the mask together
    assert sample.loaded == {"image", "mask"} and by_suffix(opened) == Counter({".jpg": 1, ".png": 1})
    torch.manual_seed(5)
    image, expected_mask = augmented[1]
    torch.testing.assert_close(sample.image, image, rtol=0, atol=0)
    torch.testing.assert_close(mask, expected_mask, rtol=0, atol=0)


def test_image_alone_never_opens_the_mask(shapes_root, opened):
    val = VOCSegmentation(shapes_root, "val", transforms=eval_transforms())
    image = val.image(1)
    assert Counter(opened) == Counter({val.image_path(1): 1})
    torch.testing.assert_close(image, val[1][0], rtol=0, atol=0)
    mapped = map_samples(VOCSegmentation(shapes_root, "val"), eval_transforms())
    opened.clear()
    torch.testing.assert_close(mapped.image(1), image, rtol=0, atol=0)
    assert Counter(opened) == Counter({val.image_path(1): 1})


def test_errors_of_a_lazy_field_name_the_dataset_and_the_file(shapes_root, tmp_path):
    copy = shutil.copytree(shapes_root, tmp_path / "copy")
    train = VOCSegmentation(copy, "train")
    train.mask_path(3).write_bytes(b"not a png")
    sample = train.sample(3)
    assert sample.image.shape == (3, 32, 32)  # the image file is fine
    with pytest.raises(ValueError, match=r"VOC split 'train'.*cannot read mask .*train_0003\.png"):
        _ = sample.mask


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 21, kernel_size=1)


@pytest.mark.parametrize("labels_present", [False, True], ids=["held-back labels", "labels on disk"])
def test_prediction_on_the_test_split_never_opens_a_mask(shapes_root, tmp_path, opened, labels_present):
    """write_submission reads `dataset[i][0]`: from a reader made with masks="none" it never opens a mask
    file, even when the split's masks are on disk (here the same seed's test masks, drawn into a folder of
    their own)."""
    from segkit.data.shapes import make_hidden_test_set

    masks = "optional"
    if labels_present:
        masks = tmp_path / "masks"
        make_hidden_test_set(tmp_path / "pack", masks, seed=0, size=32, n_test=4)
    test = VOCSegmentation(shapes_root, "test", eval_transforms(), masks=masks)
    assert test.has_masks is labels_present
    images = VOCSegmentation(shapes_root, "test", eval_transforms(), masks="none")
    model = tiny_model()
    out = tmp_path / "submission.zip"
    opened.clear()
    count = write_submission(model, images, out)
    assert count == len(test) == 4
    assert Counter(opened) == Counter({test.image_path(i): 1 for i in range(len(test))})  # images, no mask
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == sorted(f"{i}.png" for i in test.ids)
        for index, image_id in enumerate(test.ids):
            with zf.open(f"{image_id}.png") as member:
                written = np.asarray(Image.open(member))
            rgb = torch.from_numpy(np.array(Image.open(test.image_path(index)).convert("RGB")))
            normalised = (rgb.permute(2, 0, 1).float() / 255 - MEAN) / STD  # by hand
            with torch.no_grad():
                expected = model(normalised[None]).argmax(1)[0]
            np.testing.assert_array_equal(written, expected.numpy())
