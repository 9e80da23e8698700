"""Segmentation data in plain folders: your own images and masks, paired by file name.

Two common layouts are recognised automatically:

    layout "images+masks"                    layout "data+labels" (EncDecMeta search space)
    <root>/images/<name>.jpg|png|...          <root>/data/<split>/<name>.png|jpg|...
    <root>/masks/<name>.png                   <root>/labels/<split>/<name>.png

An image and its mask share the file stem (`cat_01.jpg` <-> `cat_01.png`). Masks are palette or greyscale
PNGs of class indices, 255 = void, as in VOC (see segkit.data.masks). A split without labels (a test split)
has no masks/ or labels/<split>/ folder, or an empty one: read it with masks="optional" (or "none").
"""

from __future__ import annotations

import os
from pathlib import Path

from segkit.data.masks import VOC_CLASSES, VOC_PALETTE
from segkit.data.samples import FileDataset, mask_choice

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Map file stem -> path for the files in `folder` with one of `suffixes` (case-insensitive)."""
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if path.stem in by_stem:
            raise ValueError(
                f"two files with the stem {path.stem!r} in {folder}: {by_stem[path.stem].name}, {path.name}"
            )
        by_stem[path.stem] = path
    return by_stem


def _names(stems: list[str]) -> str:
    return ", ".join(stems[:10]) + (f", ... ({len(stems)} in all)" if len(stems) > 10 else "")


class FolderDataset(FileDataset):
    """Images and masks paired by file stem, in the "images+masks" or "data+labels" layout.

    root: the dataset folder. split: None for "images+masks" (point root at one split's folder); the
        sub-folder name (e.g. "train") for "data+labels".
    transforms: optional callable `(image, mask) -> (image, mask)`.
    classes: class names, index = class id (default: the 21 VOC classes).
    masks: which masks to read (segkit.data.samples.mask_choice): "required" (default: every image needs
        a mask), "optional" (a split without masks, no mask folder or one without .png files, e.g. a test
        split of images/ only, gives `(image, None)` samples and `has_masks` False; when the masks are there
        they are read as with "required", so only some missing is always an error), "none" (images only,
        no mask ever looked for: what `segkit predict` uses) or a folder to read the masks from instead of
        masks/ or labels/<split>/.

    `ds[i]` -> (image tv_tensors.Image uint8 (3, H, W), mask tv_tensors.Mask int64 (H, W), 255 = void).
    Attributes: ids (file stems of the images, sorted), classes, num_classes, palette (VOC_PALETTE: colour of
    class index i), split, root, layout, image_dir, mask_dir, has_masks; methods image_path(i), mask_path(i)
    (None without masks), image(i) (the image alone, mask never opened) and sample(i) (a LazySample: each
    field decoded when first read).
    Every image needs a mask and every mask an image: unmatched stems are an error that names them.
    """

    palette = VOC_PALETTE

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        transforms=None,
        classes: tuple[str, ...] = VOC_CLASSES,
        masks: str | os.PathLike = "required",
    ):
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.classes = tuple(classes)
        self.layout, self.image_dir, self.mask_dir = self._find_layout()
        mode, mask_dir = mask_choice(masks, self._where)
        if mask_dir is not None:
            self.mask_dir = mask_dir
        images = _files_by_stem(self.image_dir, IMAGE_SUFFIXES)
        if not images:
            raise ValueError(
                f"{self._where}: no images found in {self.image_dir} (suffixes {IMAGE_SUFFIXES})"
            )
        found = _files_by_stem(self.mask_dir, (".png",)) if mode != "none" and self.mask_dir.is_dir() else {}
        if mode != "none" and (found or mode == "required"):
            self._check_pairs(images, found)
        self.has_masks = bool(found)
        self.ids = sorted(images)
        self._images = images
        self._masks = found

    @property
    def _where(self) -> str:
        return f"FolderDataset {self.root}" + (f" split {self.split!r}" if self.split is not None else "")

    def _find_layout(self) -> tuple[str, Path, Path]:
        """(layout, image folder, mask folder); the mask folder may be missing (a split without labels)."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        images, data = (self.root / "images").is_dir(), (self.root / "data").is_dir()
        if images and data:  # both: the one that has its mask folder
            images = (self.root / "masks").is_dir() or not (self.root / "labels").is_dir()
        if images:
            if self.split is not None:
                raise ValueError(
                    f"{self.root} uses the images/ + masks/ layout, which has no splits; "
                    f"got split={self.split!r}. "
                    "Point root at the folder of one split and leave split=None."
                )
            return "images+masks", self.root / "images", self.root / "masks"
        if data:
            splits = sorted(p.name for p in (self.root / "data").iterdir() if p.is_dir())
            if self.split is None or not (self.root / "data" / self.split).is_dir():
                raise ValueError(
                    f"{self.root} uses the data/<split>/ + labels/<split>/ layout: pass split= one of "
                    f"{splits or 'none found'} (got {self.split!r})"
                )
            return "data+labels", self.root / "data" / self.split, self.root / "labels" / self.split
        raise FileNotFoundError(
            f"{self.root} has neither images/ + masks/ nor data/<split>/ + labels/<split>/ sub-folders"
        )

    def _check_pairs(self, images: dict[str, Path], masks: dict[str, Path]) -> None:
        """Every image has a mask and every mask an image (same stem); the error names the stems."""
        if not self.mask_dir.is_dir():
            raise FileNotFoundError(
                f"{self._where}: mask folder {self.mask_dir} not found; for a split without labels pass "
                "masks='optional' (or 'none') to read its images only"
            )
        images_without_mask = sorted(set(images) - set(masks))
        masks_without_image = sorted(set(masks) - set(images))
        if images_without_mask or masks_without_image:
            problems = []
            if images_without_mask:
                problems.append(f"images without a mask in {self.mask_dir}: {_names(images_without_mask)}")
            if masks_without_image:
                problems.append(f"masks without an image in {self.image_dir}: {_names(masks_without_image)}")
            hint = "" if masks else "; for a split without labels pass masks='optional' (or 'none')"
            raise ValueError(
                f"{self._where}: image and mask file names must match (same stem); " + "; ".join(problems)
                + hint
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self._images[self.ids[index]]

    def mask_path(self, index: int) -> Path | None:
        """Path of the mask PNG of sample `index`, or None when this split has no masks."""
        return self._masks[self.ids[index]] if self.has_masks else None

    def __repr__(self) -> str:
        masks = "" if self.has_masks else ", no masks"
        return (
            f"FolderDataset(root='{self.root}', split={self.split!r}, layout={self.layout!r}, "
            f"{len(self)} images{masks})"
        )
