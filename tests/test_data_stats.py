"""dataset_stats on a hand-made tiny dataset, against counts worked out by hand."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from segkit.data import FolderDataset, VOCSegmentation, dataset_stats, write_mask

V = 255
MASKS = {
    "a": [[0, 0, 0, 1, 1],
          [0, 0, 1, 1, V],
          [0, 2, 2, V, V],
          [0, 0, 0, 0, 0]],
    "b": [[0, 0, 0, 0, 0],
          [0, 3, 3, 0, 0],
          [0, 3, 3, 0, 0],
          [0, 0, 0, 0, 0]],
    "c": [[1, 1, 1, V, 0, 0],
          [1, 1, 1, V, 0, 0],
          [V, V, V, V, 0, 0]],
}  # fmt: skip
# Counted by hand from the arrays above:
#   class 0: a 3+2+1+5 = 11, b 16, c 6 -> 33      class 1: a 4, c 6 -> 10
#   class 2: a 2                                   class 3: b 4
#   void:    a 3, c 6 -> 9                          labelled 49, all pixels 20 + 20 + 18 = 58
HAND_PIXELS = {0: 33, 1: 10, 2: 2, 3: 4}
HAND_IMAGES = {0: 3, 1: 2, 2: 1, 3: 1}
HAND_VOID = 9
# Labelled pixels per image: a 20 - 3 = 17, b 20, c 18 - 6 = 12; summed over the images holding each class:
HAND_IMAGE_PIXELS = {0: 17 + 20 + 12, 1: 17 + 12, 2: 17, 3: 20}
HAND_SIZES = Counter({(5, 4): 2, (6, 3): 1})  # (width, height)


def write_dataset(image_dir, mask_dir, suffix=".png"):
    image_dir.mkdir(parents=True)
    mask_dir.mkdir(parents=True)
    for stem, rows in MASKS.items():
        mask = np.array(rows, dtype=np.uint8)
        write_mask(mask_dir / f"{stem}.png", mask)
        Image.new("RGB", (mask.shape[1], mask.shape[0]), (10, 20, 30)).save(image_dir / f"{stem}{suffix}")


def check_against_hand_counts(stats):
    expected_pixels = np.zeros(21, dtype=np.int64)
    expected_images = np.zeros(21, dtype=np.int64)
    expected_image_pixels = np.zeros(21, dtype=np.int64)
    for index, count in HAND_PIXELS.items():
        expected_pixels[index] = count
        expected_images[index] = HAND_IMAGES[index]
        expected_image_pixels[index] = HAND_IMAGE_PIXELS[index]
    np.testing.assert_array_equal(stats.image_pixel_counts, expected_image_pixels)
    np.testing.assert_array_equal(stats.pixel_counts, expected_pixels)
    np.testing.assert_array_equal(stats.image_counts, expected_images)
    assert stats.void_pixels == HAND_VOID and stats.labelled_pixels == 49 and stats.total_pixels == 58
    np.testing.assert_allclose(stats.frequencies[[0, 1, 2, 3]], [33 / 49, 10 / 49, 2 / 49, 4 / 49])
    assert stats.frequencies[4:].sum() == 0
    assert stats.image_sizes == HAND_SIZES and stats.num_images == 3


def test_stats_of_a_folder_dataset(tmp_path):
    write_dataset(tmp_path / "images", tmp_path / "masks")
    stats = dataset_stats(FolderDataset(tmp_path))
    check_against_hand_counts(stats)
    table = stats.table()
    lines = table.splitlines()
    background = next(line for line in lines if " background " in line)
    assert background.split()[2:] == ["33", f"{100 * 33 / 49:.2f}", "3", "100.0"]
    bird = next(line for line in lines if " bird " in line)  # class 3
    assert bird.split()[2:] == ["4", f"{100 * 4 / 49:.2f}", "1", f"{100 / 3:.1f}"]
    void = next(line for line in lines if line.startswith("255 void"))
    assert void.split()[2] == "9" and f"{100 * 9 / 58:.2f} %" in void
    assert "classes with no pixels (17)" in table and "5x4: 2" in table and "6x3: 1" in table
    assert str(stats) == table


def test_stats_of_a_voc_layout_root_read_by_split(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    write_dataset(voc / "JPEGImages", voc / "SegmentationClass", suffix=".jpg")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/mini.txt").write_text("a\nb\nc\n")
    (voc / "ImageSets/Segmentation/other.txt").write_text("b\n")
    check_against_hand_counts(dataset_stats(tmp_path, split="mini"))
    assert dataset_stats(VOCSegmentation(tmp_path, split="other")).pixel_counts[3] == 4


def test_unexpected_mask_value_names_the_file(tmp_path):
    write_dataset(tmp_path / "images", tmp_path / "masks")
    write_mask(tmp_path / "masks/b.png", np.array(MASKS["b"]) * 10)  # 30 is not a VOC class
    with pytest.raises(ValueError, match=r"b\.png.*\[30\]"):
        dataset_stats(FolderDataset(tmp_path))
    stats = dataset_stats(FolderDataset(tmp_path, classes=[str(i) for i in range(31)]))
    assert stats.pixel_counts[30] == 4 and len(stats.pixel_counts) == 31
