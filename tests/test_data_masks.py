"""VOC palette, class names and the palette-PNG mask round trip (segkit.data.masks)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segkit.data import VOC_CLASSES, VOC_PALETTE, colorize_mask, read_mask, write_mask

# Colours of the 21 VOC classes as listed in the VOC development kit's colour table (independent of the
# bit-interleaving formula that segkit uses to build its palette).
VOC_DEVKIT_COLOURS = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip


def test_classes_and_palette_match_the_voc_devkit():
    assert len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor"
    assert len(VOC_PALETTE) == 256
    assert VOC_PALETTE[:21] == VOC_DEVKIT_COLOURS
    assert VOC_PALETTE[255] == (224, 224, 192)  # the cream colour of the void border
    assert len(set(VOC_PALETTE)) == 256  # every index has its own colour


def test_round_trip_keeps_every_index_including_void(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 21, size=(23, 31)).astype(np.uint8)
    mask[5:9, :] = 255
    mask[0, 0], mask[-1, -1] = 20, 255
    path = tmp_path / "mask.png"
    write_mask(path, mask)

    back = read_mask(path)
    assert back.dtype == np.uint8 and back.shape == (23, 31)
    np.testing.assert_array_equal(back, mask)
    with Image.open(path) as image:  # independent reader: Pillow itself
        assert image.format == "PNG" and image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), mask)
        # A viewer shows the palette colours: converting to RGB gives VOC colours, void cream.
        rgb = np.asarray(image.convert("RGB"))
    expected_rgb = np.array([VOC_DEVKIT_COLOURS[i] if i < 21 else (224, 224, 192) for i in mask.ravel()])
    np.testing.assert_array_equal(rgb.reshape(-1, 3), expected_rgb)
    np.testing.assert_array_equal(colorize_mask(mask), rgb)


def test_write_mask_accepts_tensors_and_int64(tmp_path):
    torch = pytest.importorskip("torch")
    mask = torch.tensor([[0, 1, 255], [7, 20, 0]], dtype=torch.int64)
    write_mask(tmp_path / "t.png", mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "t.png"), mask.numpy())


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3, 3), dtype=np.uint8), "2-D"),
        (np.zeros((2, 3), dtype=np.float32), "integer"),
        (np.full((2, 3), 256), "0..255"),
        (np.full((2, 3), -1), "0..255"),
    ],
)
def test_write_mask_rejects_bad_masks(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        write_mask(tmp_path / "bad.png", bad)


def test_rgb_mask_is_rejected_with_the_file_name(tmp_path):
    path = tmp_path / "coloured_mask.png"
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"coloured_mask\.png.*'RGB'"):
        read_mask(path)


def test_greyscale_mask_is_read_as_indices(tmp_path):
    mask = np.array([[0, 3, 255], [15, 15, 0]], dtype=np.uint8)
    Image.fromarray(mask).save(tmp_path / "grey.png")  # mode "L"
    np.testing.assert_array_equal(read_mask(tmp_path / "grey.png"), mask)


def test_corrupt_missing_and_non_png_masks_name_the_file(tmp_path):
    good = tmp_path / "good.png"
    write_mask(good, np.zeros((40, 40), dtype=np.uint8) + 3)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated.png"):
        read_mask(truncated)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="garbage.png"):
        read_mask(garbage)
    jpeg = tmp_path / "mask.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(jpeg, format="JPEG")  # JPEG bytes, .png name
    with pytest.raises(ValueError, match="mask.png"):
        read_mask(jpeg)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_mask(tmp_path / "absent.png")
