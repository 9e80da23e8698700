"""The hidden test labels, their public/private split, and setting up a competition from a dataset.

Competition folder written by `prepare_competition` (the instructor keeps `truth/` to themselves):

    COMP/truth/masks/<image_id>.png   the held-back test masks (class indices, 255 = void), to look at
    COMP/truth/masks.npy              the same masks decoded once: all pixels, uint8, image after image in
                                      sorted id order, each row-major; this is what the scorer reads
    COMP/truth/test_set.json          {"seed", "public_fraction", "public": [ids], "private": [ids],
                                       "sizes": {id: [height, width]}}
    COMP/board/                       the board (see segkit.competition.board) and competition.json
    COMP/sample_submission.zip        an all-background submission that the scorer accepts

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
import secrets
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segkit.competition.board import Board
from segkit.competition.rules import Rules, default_size_limits
from segkit.data import VOC_CLASSES, VOID_INDEX, read_mask, write_mask

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


def prepare_competition(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, seed: int | None = None,
                        public_fraction: float = 0.5, class_names: tuple[str, ...] = VOC_CLASSES,
                        daily_limit: int = 5, final_count: int = 2, ladder_margin: float | None = None,
                        time_limit_s: float = 300.0) -> dict:
    """Make a competition folder (layout in the module docstring) from a dataset with held-back test labels.

    data_dir must hold `VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt` (the test ids) and
    `test-labels/<id>.png` (their masks), as `segkit data shapes` writes them.  seed=None draws a fresh random
    seed (printed by the script and stored in truth/test_set.json).  Returns a summary dict.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    id_file = data_dir / TEST_LIST
    if not id_file.is_file():
        raise TruthError(f"{id_file} not found: the dataset needs a test split list (one image id per line)")
    ids = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise TruthError(f"{id_file}: some image ids appear more than once")
    if (out_dir / "truth").exists() or (out_dir / "board").exists():
        raise TruthError(f"{out_dir} already holds a competition (truth/ or board/); choose another --out")
    if seed is None:
        seed = secrets.randbelow(2**31)
    public, private = split_ids(ids, seed, public_fraction)
    num_classes = len(class_names)

    masks_dir = out_dir / "truth" / "masks"
    masks_dir.mkdir(parents=True)
    sizes = {}
    for image_id in ids:
        source = data_dir / "test-labels" / f"{image_id}.png"
        mask = read_mask(source)  # FileNotFoundError / ValueError name the file
        bad = (mask >= num_classes) & (mask != VOID_INDEX)
        if bad.any():
            values = np.unique(mask[bad]).tolist()
            raise TruthError(f"{source}: values {values} are neither a class index 0..{num_classes - 1} "
                             f"nor void ({VOID_INDEX})")
        write_mask(masks_dir / f"{image_id}.png", mask)
        sizes[image_id] = mask.shape
    # second pass: the decoded pixels, written straight into the file (never all in memory at once)
    offsets = pixel_offsets(sizes)
    pixels = np.lib.format.open_memmap(out_dir / "truth" / PIXELS_FILE, mode="w+", dtype=np.uint8,
                                       shape=(sum(h * w for h, w in sizes.values()),))
    for image_id, (height, width) in sizes.items():
        start = offsets[image_id]
        pixels[start:start + height * width] = read_mask(masks_dir / f"{image_id}.png").ravel()
    pixels.flush()
    del pixels
    test_set = {"seed": seed, "public_fraction": public_fraction, "public": public, "private": private,
                "sizes": {key: list(size) for key, size in sorted(sizes.items())}}
    (out_dir / "truth" / TEST_SET_FILE).write_text(json.dumps(test_set, indent=1) + "\n")

    rules = Rules(num_classes=num_classes, class_names=tuple(class_names), daily_limit=daily_limit,
                  final_count=final_count, ladder_margin=ladder_margin, time_limit_s=time_limit_s,
                  **default_size_limits(list(sizes.values())))
    Board.create(out_dir / "board", rules)
    sample = write_sample_submission(out_dir / "sample_submission.zip", sizes)
    return {"seed": seed, "public": len(public), "private": len(private), "truth": out_dir / "truth",
            "board": out_dir / "board", "sample_submission": sample, "rules": rules}


def write_sample_submission(path: str | os.PathLike, sizes: dict[str, tuple[int, int]]) -> Path:
    """An all-background submission: one palette PNG of zeros per test image, zipped flat as `<id>.png`."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for image_id, (height, width) in sorted(sizes.items()):
            png = Path(scratch) / f"{image_id}.png"
            write_mask(png, np.zeros((height, width), dtype=np.uint8))
            zipped.write(png, arcname=f"{image_id}.png")
    return path
