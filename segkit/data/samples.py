"""Reading one sample (an image and its mask) from files into torchvision `tv_tensors`.

Both dataset classes (VOCSegmentation, FolderDataset) go through `load_sample`, so they decode files the
same way and raise the same clear errors. Images are decoded with Pillow, exactly as
torchvision.datasets.VOCSegmentation does, so the two give identical pixels.

Why tv_tensors: `tv_tensors.Image` and `tv_tensors.Mask` are plain tensors with a type tag. The
torchvision.transforms.v2 transforms read the tag and apply *one* random draw to both (the same crop
window, the same flip), resizing the image with bilinear interpolation and the mask with nearest neighbour.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from segkit.data.masks import read_mask


def load_image(path: str | os.PathLike) -> tv_tensors.Image:
    """Decode an image file (JPEG, PNG, ...) to RGB: tv_tensors.Image, uint8, shape (3, H, W).

    Greyscale, palette or CMYK images are converted to RGB, as torchvision's datasets do.
    Raises FileNotFoundError for a missing file and ValueError (naming the file) for an unreadable one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())


def load_mask(path: str | os.PathLike) -> tv_tensors.Mask:
    """Read a palette/greyscale mask PNG: tv_tensors.Mask, int64, shape (H, W), 255 = void."""
    return tv_tensors.Mask(torch.from_numpy(read_mask(path)).to(torch.int64))


def load_sample(
    image_path: str | os.PathLike, mask_path: str | os.PathLike | None, where: str
) -> tuple[tv_tensors.Image, tv_tensors.Mask | None]:
    """Load (image, mask) and check that they have the same height and width.

    image: tv_tensors.Image uint8 (3, H, W); mask: tv_tensors.Mask int64 (H, W), or None when
    `mask_path` is None (a split whose labels are not available, e.g. a competition test split).
    `where` describes the dataset and split (e.g. "VOC split 'train'") and is put in every error message.
    """
    try:
        image = load_image(image_path)
        mask = None if mask_path is None else load_mask(mask_path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where}: {err}") from err
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    if mask is not None and tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(
            f"{where}: image {image_path} is {image.shape[-1]}x{image.shape[-2]} (WxH) but its mask "
            f"{mask_path} is {mask.shape[-1]}x{mask.shape[-2]}; they must have the same size"
        )
    return image, mask
