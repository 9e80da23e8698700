"""Setting up a competition: a test set the students never hold, its truth, the board and the student pack.

Two sources of a test set:

- `data="shapes"`: the set-up draws its own test split of the shapes dataset from a **secret seed**
  (segkit.data.shapes.make_hidden_test_set).  A student's `segkit data shapes` uses a public seed (0 by
  default) and writes no test masks; the competition's images come from another seed, so nothing on a
  student's laptop says anything about their masks.  The seed must be secret *and* too large to find by
  trying: the images are drawn from the seed, so with a small seed a student could draw images for seed
  after seed until one matches the pack.  Seeds below MIN_SECRET_SEED are refused; without --seed a random
  64-bit one is drawn.
- a dataset folder in the VOC layout whose test labels the instructor has moved apart:
  `VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt` (the ids), `JPEGImages/<id>.jpg` (the images) and
  `test-labels/<id>.png` (the masks).  Refused when a test id is still listed in another split or its mask
  is still in SegmentationClass/ (students have those), and when the folder is a generated shapes set
  (anyone can draw its masks again from the seed in its shapes.json).

Competition folder (the instructor keeps everything but the pack to themselves):

    COMP/truth/                       the hidden masks (segkit.competition.truth): masks/, masks.npy,
                                      test_set.json (seed, public and private ids, sizes)
    COMP/board/                       the board and competition.json (segkit.competition.board, .rules)
    COMP/student-pack/                what students get: the test images, test.txt, the sample submission,
                                      README.txt; a dataset root for `segkit predict --root`
    COMP/student-pack.zip             the same, zipped, to hand out
    COMP/sample_submission.zip        an all-background submission that the scorer accepts
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import zipfile
from pathlib import Path

import numpy as np

from segkit.competition.board import Board
from segkit.competition.rules import Rules, default_size_limits
from segkit.competition.truth import (
    PIXELS_FILE,
    TEST_LIST,
    TEST_SET_FILE,
    TruthError,
    pixel_offsets,
    split_ids,
)
from segkit.data import VOC_CLASSES, VOID_INDEX, read_mask, write_mask

MIN_SECRET_SEED = 10**15  # about 2**50: beyond trying every seed against the pack's images
SHAPES = "shapes"
PACK = "student-pack"
VOC = Path("VOCdevkit/VOC2012")

PACK_README = """\
Student pack of a segkit class competition
==========================================

This folder holds the test images of the competition and nothing else: their masks stay with your
instructor.  It is a dataset folder in the VOC layout, so `segkit predict` reads it directly:

    segkit predict runs/my_run/best.pt --root {pack} --out submission.zip

Submit the zip on the competition's upload page (your instructor gives you its address and your team's
token), or from a terminal:

    segkit submit submission.zip --server http://INSTRUCTOR-LAPTOP:8000 --token YOUR-TOKEN

A model can be submitted instead of masks: upload its checkpoint (best.pt); the server predicts these
images itself, on its CPU, and the board shows the time per image as well.

sample_submission.zip is an entry in the exact format (all background): it is accepted, and scores low.
{count} test images: VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt lists their ids.
"""


def secret_seed_problem(seed: int) -> str | None:
    """Why `seed` cannot make a secret shapes test set, or None."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return f"the seed must be a non-negative integer, got {seed!r}"
    if seed == 0:
        return ("seed 0 is the default of `segkit data shapes`: every student can draw these test masks "
                "themselves; leave --seed out to draw a secret one")
    if seed < MIN_SECRET_SEED:
        return (f"seed {seed} is too small to stay secret: a student could draw images for every seed up "
                "to it until one matches the pack; leave --seed out (a random 64-bit seed is drawn) or give "
                f"one of at least {len(str(MIN_SECRET_SEED))} digits")
    return None


def draw_secret_seed() -> int:
    """A random seed from the operating system's generator, at least MIN_SECRET_SEED."""
    while (seed := secrets.randbits(64)) < MIN_SECRET_SEED:
        pass
    return seed


def prepare_competition(data: str | os.PathLike, out_dir: str | os.PathLike, *, seed: int | None = None,
                        public_fraction: float = 0.5, class_names: tuple[str, ...] = VOC_CLASSES,
                        daily_limit: int = 5, final_count: int = 2, ladder_margin: float | None = None,
                        time_limit_s: float = 300.0, size: int = 128, n_test: int = 100) -> dict:
    """Make a competition folder (layout in the module docstring); returns a summary dict.

    data: "shapes" (a test split drawn from a secret seed: size × size pixels, n_test images), or a dataset
        folder with held-back test labels (see the module docstring).
    seed: the secret of the competition: for shapes it draws the test images and masks and splits them; for
        a folder it splits the ids.  None draws one (printed by the script, stored in truth/test_set.json).
    """
    out_dir = Path(out_dir)
    if (out_dir / "truth").exists() or (out_dir / "board").exists():
        raise TruthError(f"{out_dir} already holds a competition (truth/ or board/); choose another --out")
    pack = out_dir / PACK
    masks_dir = out_dir / "truth" / "masks"
    if str(data) == SHAPES:
        if seed is None:
            seed = draw_secret_seed()
        problem = secret_seed_problem(seed)
        if problem:
            raise TruthError(f"--seed: {problem}")
        from segkit.data.shapes import make_hidden_test_set

        masks_dir.mkdir(parents=True)
        ids = make_hidden_test_set(pack, masks_dir, seed, size=size, n_test=n_test)
        sources = {image_id: masks_dir / f"{image_id}.png" for image_id in ids}
    else:
        data_dir = Path(data)
        ids = held_back_ids(data_dir)
        if seed is None:
            seed = secrets.randbelow(2**31)
        masks_dir.mkdir(parents=True)
        copy_test_images(data_dir, ids, pack)
        sources = {image_id: data_dir / "test-labels" / f"{image_id}.png" for image_id in ids}
    public, private = split_ids(ids, seed, public_fraction)
    sizes = write_truth(out_dir / "truth", sources, len(class_names))
    test_set = {"seed": seed, "public_fraction": public_fraction, "public": public, "private": private,
                "sizes": {key: list(value) for key, value in sorted(sizes.items())}}
    (out_dir / "truth" / TEST_SET_FILE).write_text(json.dumps(test_set, indent=1) + "\n")

    rules = Rules(num_classes=len(class_names), class_names=tuple(class_names), daily_limit=daily_limit,
                  final_count=final_count, ladder_margin=ladder_margin, time_limit_s=time_limit_s,
                  **default_size_limits(list(sizes.values())))
    Board.create(out_dir / "board", rules)
    sample = write_sample_submission(out_dir / "sample_submission.zip", sizes)
    shutil.copy(sample, pack / "sample_submission.zip")
    (pack / "README.txt").write_text(PACK_README.format(pack=PACK, count=len(ids)))
    pack_zip = zip_folder(pack, out_dir / f"{PACK}.zip")
    return {"seed": seed, "public": len(public), "private": len(private), "truth": out_dir / "truth",
            "board": out_dir / "board", "sample_submission": sample, "rules": rules, "pack": pack,
            "pack_zip": pack_zip}


def held_back_ids(data_dir: Path) -> list[str]:
    """The test ids of a dataset folder with held-back labels, after checking that students hold none of
    those labels (TruthError naming the file otherwise)."""
    if (data_dir / "shapes.json").is_file():
        seed = json.loads((data_dir / "shapes.json").read_text()).get("parameters", {}).get("seed")
        raise TruthError(f"{data_dir} is a generated shapes set (seed {seed} in its shapes.json): anyone "
                         "can draw its test masks again from that seed; use --data shapes, which draws a "
                         "test set from a secret seed")
    id_file = data_dir / TEST_LIST
    if not id_file.is_file():
        raise TruthError(f"{id_file} not found: the dataset needs a test split list (one image id per line)")
    ids = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
    if len(set(ids)) != len(ids):
        raise TruthError(f"{id_file}: some image ids appear more than once")
    if len(ids) < 2:
        raise TruthError(f"{id_file}: a competition needs at least 2 test images, got {len(ids)}")
    wanted = set(ids)
    for other in sorted(id_file.parent.glob("*.txt")):
        if other == id_file:
            continue
        shared = sorted(wanted & {line.strip() for line in other.read_text().splitlines()})
        if shared:
            raise TruthError(f"{other} lists {len(shared)} test id(s), e.g. {shared[0]!r}: students have the "
                             "labels of that split; move the test ids out of it")
    labelled = data_dir / VOC / "SegmentationClass"
    exposed = [image_id for image_id in ids if (labelled / f"{image_id}.png").exists()]
    if exposed:
        raise TruthError(f"{labelled / (exposed[0] + '.png')}: the mask of test image {exposed[0]!r} is "
                         f"among the labelled masks ({len(exposed)} test ids in all); move them to "
                         "test-labels/")
    return ids


def copy_test_images(data_dir: Path, ids: list[str], pack: Path) -> None:
    """The test images and test.txt, into the student pack's VOC layout."""
    source, target = data_dir / VOC / "JPEGImages", pack / VOC / "JPEGImages"
    target.mkdir(parents=True)
    for image_id in ids:
        image = source / f"{image_id}.jpg"
        if not image.is_file():
            raise TruthError(f"{image} not found: the student pack needs every test image")
        shutil.copy(image, target / image.name)
    lists = pack / TEST_LIST
    lists.parent.mkdir(parents=True)
    lists.write_text("".join(f"{i}\n" for i in ids))


def write_truth(truth: Path, sources: dict[str, Path], num_classes: int) -> dict[str, tuple[int, int]]:
    """truth/masks/<id>.png and truth/masks.npy from the masks in `sources` (id -> PNG); returns the sizes.

    Each mask is checked (values 0..num_classes-1 or void) and copied to masks/ (unless it is already
    there), then the decoded pixels are written straight into masks.npy, never all in memory at once.
    """
    sizes = {}
    for image_id, source in sources.items():
        mask = read_mask(source)  # FileNotFoundError / ValueError name the file
        bad = (mask >= num_classes) & (mask != VOID_INDEX)
        if bad.any():
            values = np.unique(mask[bad]).tolist()
            raise TruthError(f"{source}: values {values} are neither a class index 0..{num_classes - 1} "
                             f"nor void ({VOID_INDEX})")
        target = truth / "masks" / f"{image_id}.png"
        if source != target:
            write_mask(target, mask)
        sizes[image_id] = mask.shape
    offsets = pixel_offsets(sizes)
    pixels = np.lib.format.open_memmap(truth / PIXELS_FILE, mode="w+", dtype=np.uint8,
                                       shape=(sum(h * w for h, w in sizes.values()),))
    for image_id, (height, width) in sizes.items():
        start = offsets[image_id]
        pixels[start:start + height * width] = read_mask(truth / "masks" / f"{image_id}.png").ravel()
    pixels.flush()
    del pixels
    return sizes


def write_sample_submission(path: str | os.PathLike, sizes: dict[str, tuple[int, int]]) -> Path:
    """An all-background submission: one palette PNG of zeros per test image, zipped flat as `<id>.png`."""
    import tempfile

    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for image_id, (height, width) in sorted(sizes.items()):
            png = Path(scratch) / f"{image_id}.png"
            write_mask(png, np.zeros((height, width), dtype=np.uint8))
            zipped.write(png, arcname=f"{image_id}.png")
    return path


def zip_folder(folder: Path, path: Path) -> Path:
    """Every file under `folder`, zipped under the folder's own name (`student-pack/...`)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            zipped.write(file, arcname=str(Path(folder.name) / file.relative_to(folder)))
    return path
