"""PASCAL VOC-2012 segmentation (and anything stored in its layout, such as the generated shapes set).

The layout on disk:

    <root>/VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg                      the photos
        SegmentationClass/<id>.png               palette PNG masks: class index per pixel, 255 = void
        SegmentationClassAug/<id>.png            optional: SBD's extra labels (split "train_aug")
        ImageSets/Segmentation/<split>.txt       one image id per line: train, val, trainval, ...

`VOCSegmentation(root, split)` reads any `<split>.txt` in ImageSets/Segmentation. Each sample is
`(image, mask)`: image `tv_tensors.Image` uint8 (3, H, W), mask `tv_tensors.Mask` int64 (H, W).
"""

from __future__ import annotations

import os
from pathlib import Path

from segkit import paths
from segkit.data.masks import VOC_CLASSES, VOC_PALETTE
from segkit.data.samples import FileDataset, mask_choice

VOC_OFFICIAL_PAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
VOC_ARCHIVE = "VOCtrainval_11-May-2012.tar"

VOC_LAYOUT = """\
    <data>/VOCdevkit/VOC2012/
        JPEGImages/2007_000032.jpg ...
        SegmentationClass/2007_000032.png ...
        ImageSets/Segmentation/train.txt, val.txt, trainval.txt"""


def _looks_like_voc2012(folder: Path) -> bool:
    return (folder / "JPEGImages").is_dir() and (folder / "ImageSets" / "Segmentation").is_dir()


def find_voc_root(root: str | os.PathLike | None = None) -> Path:
    """Return the VOC2012 folder (the one holding JPEGImages/).

    `root` may be the VOC2012 folder itself, the VOCdevkit folder, or the folder holding VOCdevkit.
    root=None looks in segkit.paths.data_root() ($SEGKIT_DATA, else data/ in the repository).
    Raises FileNotFoundError explaining where to get VOC-2012 and where to put it.
    """
    base = paths.data_root(root)
    candidates = [base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"]
    for candidate in candidates:
        if _looks_like_voc2012(candidate):
            return candidate
    looked = "\n".join(f"    {c}" for c in candidates)
    raise FileNotFoundError(
        "PASCAL VOC-2012 was not found. Looked for a folder holding JPEGImages/ and "
        f"ImageSets/Segmentation/ in:\n{looked}\n"
        "Get VOC-2012 yourself (segkit does not download it):\n"
        f"  - the official page {VOC_OFFICIAL_PAGE} (archive {VOC_ARCHIVE}, about 2 GB), or\n"
        '  - torchvision.datasets.VOCSegmentation(root, year="2012", download=True)'
        " when the VOC server is up.\n"
        "Unpack it under data/ in the repository, or under the folder named by $SEGKIT_DATA, or pass "
        "root=..., so that the layout is:\n"
        f"{VOC_LAYOUT}\n"
        "For a small synthetic dataset in the same layout, run: segkit data shapes"
    )


def available_splits(voc_root: Path) -> list[str]:
    """Names of the split files in ImageSets/Segmentation, sorted."""
    return sorted(p.stem for p in (voc_root / "ImageSets" / "Segmentation").glob("*.txt"))


class VOCSegmentation(FileDataset):
    """A split of a dataset in the VOC-2012 layout.

    root: the folder holding VOCdevkit, the VOCdevkit folder or the VOC2012 folder; None = data_root().
    split: the name of any ImageSets/Segmentation/<split>.txt ("train", "val", "trainval", ...).
        "train_aug" reads its masks from SegmentationClassAug/ when that folder exists.
    transforms: optional callable `(image, mask) -> (image, mask)`, e.g. segkit.data.train_transforms().
    masks: which masks to read (segkit.data.samples.mask_choice): "required" (default: every id has its
        SegmentationClass/<id>.png), "optional" (a split whose masks are all absent, such as a test split
        with held-back labels, gives `(image, None)` samples and `has_masks` False; transforms then get the
        image alone), "none" (images only, no mask ever looked for: what `segkit predict` uses) or a folder
        to read `<id>.png` masks from instead (e.g. an instructor's held-back test labels).

    `ds[i]` -> (image tv_tensors.Image uint8 (3, H, W), mask tv_tensors.Mask int64 (H, W), 255 = void)
    when transforms is None. Attributes: ids, classes, num_classes, palette (VOC_PALETTE), split, root
    (the VOC2012 folder), has_masks; methods image_path(i), mask_path(i), image(i) (the image alone, mask
    never opened) and sample(i) (a LazySample: each field decoded when first read).
    """

    palette = VOC_PALETTE

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        transforms=None,
        masks: str | os.PathLike = "required",
    ):
        self.root = find_voc_root(root)
        self.split = split
        self.transforms = transforms
        self.classes = VOC_CLASSES
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise ValueError(
                f"unknown split {split!r}: no {split_file}. "
                f"Available splits in {self.root}: {', '.join(available_splits(self.root)) or 'none'}"
            )
        self.ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        if not self.ids:
            raise ValueError(f"split {split!r}: {split_file} lists no image ids")
        self._where = f"VOC split {split!r} ({split_file})"
        mode, mask_dir = mask_choice(masks, self._where)
        self.image_dir = self.root / "JPEGImages"
        if mask_dir is not None:
            self.mask_dir = mask_dir
        elif split == "train_aug" and (self.root / "SegmentationClassAug").is_dir():
            self.mask_dir = self.root / "SegmentationClassAug"
        else:
            self.mask_dir = self.root / "SegmentationClass"
        self._check_images_exist()
        self.has_masks = self._check_masks_exist(mode == "required") if mode != "none" else False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / f"{self.ids[index]}.jpg"

    def mask_path(self, index: int) -> Path | None:
        """Path of the mask PNG of sample `index`, or None when this split has no masks."""
        return self.mask_dir / f"{self.ids[index]}.png" if self.has_masks else None

    def __repr__(self) -> str:
        masks = self.mask_dir.name if self.has_masks else "no masks"
        return f"VOCSegmentation(root='{self.root}', split={self.split!r}, {len(self)} images, {masks})"

    def _missing(self, folder: Path, suffix: str) -> list[str]:
        present = {entry.name for entry in os.scandir(folder)} if folder.is_dir() else set()
        return [i for i in self.ids if f"{i}{suffix}" not in present]

    def _check_images_exist(self) -> None:
        missing = self._missing(self.image_dir, ".jpg")
        if missing:
            raise FileNotFoundError(
                f"{self._where}: {len(missing)} image file(s) missing, "
                f"e.g. {self.image_dir / missing[0]}.jpg "
                f"(ids: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
            )

    def _check_masks_exist(self, required: bool) -> bool:
        missing = self._missing(self.mask_dir, ".png")
        if not missing:
            return True
        if len(missing) == len(self.ids) and not required:
            return False
        hint = ""
        if len(missing) == len(self.ids):
            hint = (
                " This split has no masks in that folder; pass masks='optional' (or 'none') to read its "
                "images only, or masks=<folder> to read its masks from another folder."
            )
        raise FileNotFoundError(
            f"{self._where}: {len(missing)} of {len(self.ids)} mask file(s) missing, e.g. "
            f"{self.mask_dir / missing[0]}.png (ids: {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}).{hint}"
        )
