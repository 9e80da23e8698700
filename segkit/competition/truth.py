"""The hidden test labels and their public/private split: the truth folder that the scorer reads.

Truth folder, written by segkit.competition.prepare (the instructor keeps it to themselves):

    COMP/truth/masks/<image_id>.png   the held-back test masks (class indices, 255 = void), to look at
    COMP/truth/masks.npy              the same masks decoded once: all pixels, uint8, image after image in
                                      sorted id order, each row-major; this is what the scorer reads
    COMP/truth/test_set.json          {"seed", "public_fraction", "public": [ids], "private": [ids],
                                       "sizes": {id: [height, width]}}

The split is `random.Random(seed).shuffle` of the sorted test ids, the first round(fraction × n) being public:
the same seed always gives the same split, and without the seed (or test_set.json) nobody can tell which
image is in which part.

Why masks.npy: every scoring needs every truth mask, and decoding a PNG costs about as much as the rest of
the scoring of that image.  Decoded once at set-up and memory-mapped, the truth costs next to nothing to
read, so a scoring decodes only the submission.  To change the truth, run the set-up again (editing a PNG in
masks/ changes nothing).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TEST_SET_FILE = "test_set.json"
PIXELS_FILE = "masks.npy"
TEST_LIST = Path("VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt")


class TruthError(RuntimeError):
    """The truth folder is missing or inconsistent: the instructor's set-up, not the student, is at fault."""


def split_ids(ids: list[str], seed: int, public_fraction: float) -> tuple[list[str], list[str]]:
    """(public ids, private ids), both sorted; deterministic in (set of ids, seed, public_fraction)."""
    if not 0 < public_fraction < 1:
        raise ValueError(f"public_fraction must be between 0 and 1 (exclusive), got {public_fraction}")
    if len(ids) < 2:
        raise ValueError(f"a public/private split needs at least 2 test images, got {len(ids)}")
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_public = min(max(round(public_fraction * len(order)), 1), len(order) - 1)
    return sorted(order[:n_public]), sorted(order[n_public:])


@dataclass(frozen=True)
class TestSet:
    """The truth folder: which ids exist, their sizes, which are public, and their masks."""

    __test__ = False  # not a pytest test class, despite the name

    folder: Path
    public: frozenset[str]
    private: frozenset[str]
    sizes: dict[str, tuple[int, int]]  # id -> (height, width)
    pixels: np.ndarray = field(repr=False)  # masks.npy, memory-mapped: (total pixels,) uint8
    offsets: dict[str, int] = field(repr=False)  # id -> where its pixels start in `pixels`

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TestSet:
        folder = Path(folder)
        path = folder / TEST_SET_FILE
        if not path.is_file():
            raise TruthError(f"{path} not found: not a truth folder "
                             "(make one with `segkit competition setup`)")
        try:
            info = json.loads(path.read_text())
            public, private = frozenset(info["public"]), frozenset(info["private"])
            sizes = {key: (int(h), int(w)) for key, (h, w) in info["sizes"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise TruthError(f"{path}: expected keys 'public', 'private', 'sizes' "
                             f"({type(err).__name__}: {err})") from None
        if public & private or (public | private) != set(sizes):
            raise TruthError(f"{path}: 'public' and 'private' must split the ids of 'sizes' without overlap")
        offsets = pixel_offsets(sizes)
        total = sum(h * w for h, w in sizes.values())
        try:  # mode "c" (copy-on-write): a writable view, and the file itself is never changed
            pixels = np.load(folder / PIXELS_FILE, mmap_mode="c")
        except (OSError, ValueError) as err:
            raise TruthError(f"{folder / PIXELS_FILE} is missing or unreadable ({err}); "
                             "run the set-up again") from None
        if pixels.dtype != np.uint8 or pixels.shape != (total,):
            raise TruthError(f"{folder / PIXELS_FILE} holds {pixels.dtype} {pixels.shape}, but "
                             f"{TEST_SET_FILE} needs uint8 ({total},); run the set-up again")
        return cls(folder=folder, public=public, private=private, sizes=sizes, pixels=pixels, offsets=offsets)

    def mask_path(self, image_id: str) -> Path:
        """The PNG copy of one truth mask (for looking at; the scorer reads masks.npy)."""
        return self.folder / "masks" / f"{image_id}.png"

    def read(self, image_id: str) -> np.ndarray:
        """The true mask of one test image: (H, W) uint8, 255 = void (a view into masks.npy)."""
        height, width = self.sizes[image_id]
        start = self.offsets[image_id]
        return self.pixels[start:start + height * width].reshape(height, width)


def pixel_offsets(sizes: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Where each image starts in masks.npy: images in sorted id order, one after the other."""
    offsets, position = {}, 0
    for image_id in sorted(sizes):
        offsets[image_id] = position
        height, width = sizes[image_id]
        position += height * width
    return offsets
