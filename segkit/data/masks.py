"""VOC class names, the VOC colour palette, and reading/writing masks as palette PNG files.

A segmentation mask is a 2-D array of class indices: 0 = background, 1..20 = the VOC object classes and
255 = "void" (object borders and unclear pixels, ignored by losses and metrics).

On disk, VOC stores a mask as a *palette* ("P" mode) PNG: every pixel holds one byte, the class index, and
the file carries a table (the palette) saying which colour to show for each index. That is why a VOC mask
looks coloured in an image viewer while `np.asarray(Image.open(path))` gives the class indices directly.
Never call `.convert("RGB")` on a mask: you would get colours back and would have to map them to
indices again (which is how the void border silently turns into background in some tutorials).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

VOID_INDEX = 255
"""Mask value for void / ignored pixels (object borders in VOC)."""

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_colour(index: int) -> tuple[int, int, int]:
    """The VOC palette colour of class `index` (0..255).

    The bits of the index are dealt out in turn to red, green and blue, starting from each channel's most
    significant bit: bit 0 of the index -> bit 7 of red, bit 1 -> bit 7 of green, bit 2 -> bit 7 of blue,
    bit 3 -> bit 6 of red, and so on. So 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0),
    4 -> (0, 0, 128), and 255 (void) -> (224, 224, 192), the cream colour of VOC object borders.
    """
    if not 0 <= index <= 255:
        raise ValueError(f"palette index must be in 0..255, got {index}")
    red = green = blue = 0
    bits = index
    for shift in range(7, -1, -1):
        red |= (bits & 1) << shift
        green |= ((bits >> 1) & 1) << shift
        blue |= ((bits >> 2) & 1) << shift
        bits >>= 3
    return red, green, blue


VOC_PALETTE: list[tuple[int, int, int]] = [voc_colour(i) for i in range(256)]
"""256 (r, g, b) colours: VOC_PALETTE[class_index]."""


def colorize_mask(mask) -> np.ndarray:
    """Colour a mask with the VOC palette for display.

    mask: (H, W) integer array or tensor with values in 0..255  ->  (H, W, 3) uint8 RGB image.
    """
    indices = _as_index_array(mask, where="colorize_mask")
    return np.asarray(VOC_PALETTE, dtype=np.uint8)[indices]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG and return its class indices: (H, W) uint8 (255 = void).

    The file must be a palette ("P") or greyscale ("L") PNG whose pixel values are the class indices.
    A colour (RGB/RGBA) mask is rejected: its colours would first have to be mapped back to indices, and
    guessing that mapping silently is how labels get corrupted.
    Raises FileNotFoundError if the file is missing and ValueError (naming the file) if it is not a
    readable PNG or has the wrong mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path, formats=["PNG"]) as image:
            mode = image.mode
            if mode not in ("P", "L"):
                raise ValueError(
                    f"mask {path} has image mode {mode!r}, expected 'P' (palette) or 'L' (greyscale) holding "
                    "class indices; a coloured (RGB) mask must be converted to class indices first"
                )
            indices = np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # unreadable or truncated file
        raise ValueError(f"cannot read mask {path}: not a valid PNG file ({err})") from err
    return indices


def write_mask(path: str | os.PathLike, mask) -> None:
    """Write a mask as a palette PNG with the VOC palette, so it opens coloured in any image viewer.

    mask: (H, W) array or tensor of integers in 0..255 (class indices, 255 = void).
    `read_mask(path)` gives back exactly the same indices.
    """
    indices = _as_index_array(mask, where=f"write_mask({path})")
    image = Image.fromarray(indices)  # mode "L": one byte per pixel
    image.putpalette([channel for colour in VOC_PALETTE for channel in colour])  # turns it into mode "P"
    image.save(Path(path), format="PNG")


def _as_index_array(mask, where: str) -> np.ndarray:
    """Check that `mask` is a 2-D array of integers in 0..255 and return it as uint8."""
    array = mask.cpu().numpy() if hasattr(mask, "cpu") else np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"{where}: a mask must be 2-D (H, W), got shape {tuple(array.shape)}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: a mask must hold integer class indices, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"{where}: mask values must be class indices in 0..255, found {array.min()}..{array.max()}"
        )
    return array.astype(np.uint8, copy=False)
