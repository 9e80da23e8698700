"""Reading one sample (an image and its mask) from files into torchvision `tv_tensors`.

Both dataset classes (VOCSegmentation, FolderDataset) go through `load_sample`, so they decode files the
same way and raise the same clear errors. Images are decoded with Pillow, exactly as
torchvision.datasets.VOCSegmentation does, so the two give identical pixels.

Why tv_tensors: `tv_tensors.Image` and `tv_tensors.Mask` are plain tensors with a type tag. The
torchvision.transforms.v2 transforms read the tag and apply *one* random draw to both (the same crop
window, the same flip), resizing the image with bilinear interpolation and the mask with nearest neighbour.

Lazy fields: `LazySample` holds one sample whose image and mask are decoded only when first read, so a
filter that looks at masks never decodes an image (`segkit.data.ops.filter_samples`), and code that needs
images only never opens a mask file.
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


def load_checked(loader, path: str | os.PathLike, where: str):
    """`loader(path)` (load_image or load_mask), with `where` (the dataset and split) put in front of the
    message of a FileNotFoundError or ValueError."""
    try:
        return loader(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where}: {err}") from err
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err


def load_sample(
    image_path: str | os.PathLike, mask_path: str | os.PathLike | None, where: str
) -> tuple[tv_tensors.Image, tv_tensors.Mask | None]:
    """Load (image, mask) and check that they have the same height and width.

    image: tv_tensors.Image uint8 (3, H, W); mask: tv_tensors.Mask int64 (H, W), or None when
    `mask_path` is None (a split whose labels are not available, e.g. a competition test split).
    `where` describes the dataset and split (e.g. "VOC split 'train'") and is put in every error message.
    """
    image = load_checked(load_image, image_path, where)
    mask = None if mask_path is None else load_checked(load_mask, mask_path, where)
    if mask is not None and tuple(mask.shape) != tuple(image.shape[-2:]):
        raise ValueError(
            f"{where}: image {image_path} is {image.shape[-1]}x{image.shape[-2]} (WxH) but its mask "
            f"{mask_path} is {mask.shape[-1]}x{mask.shape[-2]}; they must have the same size"
        )
    return image, mask


class LazySample:
    """One sample whose fields are computed the first time they are read, then kept.

    sample.id: the image id (str).
    sample.image: tv_tensors.Image, e.g. uint8 (3, H, W), computed by `image_loader()` on first read.
    sample.mask: tv_tensors.Mask, e.g. int64 (H, W), 255 = void, computed by `mask_loader()` on first
        read; None when `mask_loader` is None (a split without labels).
    sample.loaded: the names of the fields computed so far (e.g. {"mask"} after a filter on masks).

    A loader is a function without arguments. Datasets make their samples with `file_sample` (each field
    from its own file) or `LazySample.from_item` (both fields from one call, when transforms must see the
    image and the mask together).
    """

    def __init__(self, sample_id: str, image_loader, mask_loader=None):
        self.id = sample_id
        self._loaders = {"image": image_loader, "mask": mask_loader}
        self._load_both = None  # set by from_item
        self._values = {}

    @classmethod
    def from_item(cls, sample_id: str, get_item) -> LazySample:
        """A sample whose two fields come from one call of `get_item() -> (image, mask)`, made when either
        field is first read (for transformed samples: a random transform draws once for both)."""
        sample = cls(sample_id, None, None)
        sample._load_both = get_item
        return sample

    def _get(self, field: str):
        if field not in self._values:
            if self._load_both is not None:
                self._values["image"], self._values["mask"] = self._load_both()
            else:
                loader = self._loaders[field]
                self._values[field] = None if loader is None else loader()
        return self._values[field]

    @property
    def image(self):
        return self._get("image")

    @property
    def mask(self):
        return self._get("mask")

    @property
    def loaded(self) -> set[str]:
        return set(self._values)

    def __repr__(self) -> str:
        return f"LazySample(id={self.id!r}, loaded={sorted(self.loaded)})"


def file_sample(
    sample_id: str, image_path: str | os.PathLike, mask_path: str | os.PathLike | None, where: str
) -> LazySample:
    """A LazySample reading `image_path` and `mask_path` (None: no mask) only when each field is read.

    Reading `.mask` alone never opens the image file, and reading `.image` alone never opens the mask.
    The size check of `load_sample` needs both, so it is left to `dataset[i]`.
    """
    mask_loader = None if mask_path is None else (lambda: load_checked(load_mask, mask_path, where))
    return LazySample(sample_id, lambda: load_checked(load_image, image_path, where), mask_loader)


MASK_CHOICES = ("required", "optional", "none")


def mask_choice(masks, where: str) -> tuple[str, Path | None]:
    """The readers' one `masks=` switch, as (mode, folder):

        "required"  (the default) every image has its mask; any missing one is an error naming it
        "optional"  a split whose masks are all absent is read as (image, None) (a test split whose labels
                    are held back); masks that are there are read, and some missing is still an error
        "none"      images only: no mask file is looked for or opened (prediction); has_masks is False
        a folder    (a pathlib.Path, or a str that is not one of the words above) read the masks from it
                    instead of the dataset's own mask folder; every one required
    """
    if isinstance(masks, str) and masks in MASK_CHOICES:
        return masks, None
    if isinstance(masks, (str, os.PathLike)):
        return "required", Path(masks)
    raise ValueError(f"{where}: masks must be one of {', '.join(repr(c) for c in MASK_CHOICES)} or a folder "
                     f"of mask PNGs, got {masks!r}")


class FileDataset:
    """What VOCSegmentation and FolderDataset share: reading one image, or a lazy sample, from files.

    A subclass provides `ids`, `transforms`, `image_path(i)`, `mask_path(i)` (None without masks) and
    `_where` (the dataset and split named in error messages).
    """

    def __getitem__(self, index: int):
        """(image, mask) of sample `index`, transformed together; (image, None) when the split has no masks
        (the transforms then get the image alone). With transforms=None: tv_tensors.Image uint8 (3, H, W)
        and tv_tensors.Mask int64 (H, W), 255 = void."""
        image, mask = load_sample(self.image_path(index), self.mask_path(index), self._where)
        if self.transforms is None:
            return image, mask
        if mask is None:
            return self.transforms(image), None
        return self.transforms(image, mask)

    def image(self, index: int):
        """The image of sample `index` with the transforms applied to it alone; the mask file is never
        opened (prediction). With transforms=None: tv_tensors.Image uint8 (3, H, W)."""
        image = load_checked(load_image, self.image_path(index), self._where)
        return image if self.transforms is None else self.transforms(image)

    def sample(self, index: int) -> LazySample:
        """Sample `index` as a LazySample: the same values as `self[index]`, computed when first read.

        Without transforms each field reads only its own file (`.mask` never decodes the image). With
        transforms, reading either field loads both and transforms them together.
        """
        if self.transforms is not None:
            return LazySample.from_item(self.ids[index], lambda: self[index])
        return file_sample(self.ids[index], self.image_path(index), self.mask_path(index), self._where)
