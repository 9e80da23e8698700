"""The "shapes" dataset: a small synthetic segmentation set in exactly the VOC-2012 layout.

Every tool that reads VOC (segkit.data.VOCSegmentation, torchvision.datasets.VOCSegmentation, the
trainer, the scorer) works on it unchanged, and a small network learns it in a minute or two on a CPU.

What is in an image (size x size pixels, default 128):
- a textured background: a smooth random colour field, sometimes stripes, and pixel noise;
- 1 to 4 objects. Each object class is one shape with one colour family (jittered per object, shaded
  with a random gradient), and uses the VOC index of a real class, so VOC names and colours apply:

      1 aeroplane    light-blue triangles        3 bird        yellow five-pointed stars
      7 car          red rectangles              15 person     purple upright ellipses
      16 pottedplant green circles

- objects of varied size (radius 6-28 % of the image), sometimes overlapping (a later object hides an
  earlier one) and sometimes cut by the image border;
- in the mask, a thin band of 255 ("void") along every boundary between two labels, as in VOC, because
  the blurred, JPEG-compressed image does not say exactly where one object ends.

Background covers about 87 % of the labelled pixels (void about 4 % of all pixels): predicting "background"
everywhere scores a pixel accuracy near 0.87 but a mean IoU near 0.87 / 6 = 0.15 (IoU 0 for the five object
classes) — the class-imbalance lesson of VOC.

Files written under out_dir by `make_shapes`:

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg                  all images (train, val and test)
    VOCdevkit/VOC2012/SegmentationClass/<id>.png           masks of train and val only
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval,test}.txt
    shapes.json                                            parameters; written last = "complete"

The test split's masks are written nowhere: a test split to practise `segkit predict` on, not a test set.
Anyone can draw them again from the seed (default 0, the same on every laptop), so they could never be a
secret.  The class competition's test set comes from `make_hidden_test_set`, called by `segkit competition
setup --data shapes` with a secret seed: images for the students' pack, masks for the instructor.

Ids are "<split>_<i:04d>". Image i of a split is drawn from its own random generator seeded by
(seed, split, i): the same seed gives the same bytes, and changing --n-train leaves val and test unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from segkit import paths
from segkit.data.masks import VOC_CLASSES, VOID_INDEX, write_mask

FORMAT_VERSION = 2  # 2: the test split has no masks (1 kept them in test-labels/)
MARKER_NAME = "shapes.json"
WRITING_NAME = ".shapes-incomplete"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# VOC class index -> (shape drawn, base colour (r, g, b)).
SHAPE_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    1: ("triangle", (140, 180, 240)),
    3: ("star", (235, 200, 40)),
    7: ("rectangle", (210, 45, 40)),
    15: ("ellipse", (170, 65, 190)),
    16: ("circle", (50, 165, 65)),
}


def default_shapes_dir() -> Path:
    """Where the shapes set goes by default: <data root>/shapes (data/ or $SEGKIT_DATA)."""
    return paths.data_root() / "shapes"


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float, rng) -> list[tuple[float, float]]:
    """Corner points of one object outline, centred at (cx, cy), rotated by `angle` (radians)."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x, y = radius * np.cos(t), radius * np.sin(t)
    elif shape == "ellipse":  # upright: tall and narrow, tilted a little
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x, y = 0.5 * radius * np.cos(t), radius * np.sin(t)
        angle = rng.uniform(-0.3, 0.3)
    elif shape == "rectangle":  # wider than tall, roughly horizontal
        half_h = radius * rng.uniform(0.45, 0.75)
        x, y = np.array([-radius, radius, radius, -radius]), np.array([-half_h, -half_h, half_h, half_h])
        angle = rng.uniform(-0.4, 0.4)
    elif shape == "triangle":
        t = np.arange(3) * 2 * np.pi / 3
        x, y = radius * np.cos(t), radius * np.sin(t)
    elif shape == "star":
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
        x, y = r * np.cos(t), r * np.sin(t)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    cos, sin = np.cos(angle), np.sin(angle)
    return list(zip(cx + cos * x - sin * y, cy + sin * x + cos * y, strict=True))


def _background(rng, size: int) -> np.ndarray:
    """A textured, weakly coloured background: (size, size, 3) float in about 0..255."""
    grey = rng.uniform(70, 190)
    base = grey + rng.uniform(-20, 20, size=3)
    coarse = rng.normal(0, 1, size=(5, 5, 3))
    coarse = ((coarse - coarse.min()) / (np.ptp(coarse) + 1e-9) * 255).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64
    )
    image = base + (smooth - 127.5) * rng.uniform(0.1, 0.3)
    if rng.random() < 0.5:  # stripes
        yy, xx = np.mgrid[0:size, 0:size]
        direction = rng.uniform(0, np.pi)
        period = rng.uniform(0.05, 0.2) * size
        phase = (xx * np.cos(direction) + yy * np.sin(direction)) * 2 * np.pi / period
        image += rng.uniform(8, 20) * np.sin(phase)[..., None]
    return image


def _draw_sample(rng, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its mask (size, size) uint8 with a void band."""
    image = _background(rng, size)
    label = Image.new("L", (size, size), 0)
    class_ids = list(SHAPE_CLASSES)
    centres: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(1, 5))):
        class_id = class_ids[int(rng.integers(len(class_ids)))]
        shape, colour = SHAPE_CLASSES[class_id]
        radius = rng.uniform(0.06, 0.28) * size
        if centres and rng.random() < 0.35:  # place it against an earlier object so the two overlap
            px, py, pr = centres[int(rng.integers(len(centres)))]
            direction = rng.uniform(0, 2 * np.pi)
            distance = 0.7 * (pr + radius)
            cx, cy = px + distance * np.cos(direction), py + distance * np.sin(direction)
        else:
            cx, cy = rng.uniform(0.1, 0.9, size=2) * size
        centres.append((cx, cy, radius))
        outline = _polygon(shape, cx, cy, radius, rng.uniform(0, 2 * np.pi), rng)
        footprint = Image.new("L", (size, size), 0)
        ImageDraw.Draw(footprint).polygon(outline, fill=1)
        rows, cols = np.nonzero(np.asarray(footprint))
        ImageDraw.Draw(label).polygon(outline, fill=class_id)
        # Colour: the class colour, jittered, shaded by a linear gradient in a random direction.
        direction = rng.uniform(0, 2 * np.pi)
        along = (cols / size - 0.5) * np.cos(direction) + (rows / size - 0.5) * np.sin(direction)
        shading = 1 + rng.uniform(0.1, 0.3) * along
        object_colour = np.clip(np.asarray(colour) + rng.normal(0, 15, size=3), 0, 255)
        image[rows, cols] = shading[:, None] * object_colour
    # Soft edges (an optical blur), then sensor noise.
    blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(blurred, dtype=np.float64) + rng.normal(0, 6, size=(size, size, 3))
    mask = _add_void_band(np.array(label), radius=max(1, size // 128))
    return np.clip(noisy, 0, 255).round().astype(np.uint8), mask


def _add_void_band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Set to 255 every pixel that has a pixel of another label within `radius` (a square neighbourhood)."""
    height, width = mask.shape
    padded = np.pad(mask, radius, mode="edge")
    near_other = np.zeros(mask.shape, dtype=bool)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[radius + dy : radius + dy + height, radius + dx : radius + dx + width]
            near_other |= shifted != mask
    out = mask.copy()
    out[near_other] = VOID_INDEX
    return out


def _parameters(seed: int, size: int, n_train: int, n_val: int, n_test: int) -> dict:
    return {"format_version": FORMAT_VERSION, "seed": seed, "size": size,
            "n_train": n_train, "n_val": n_val, "n_test": n_test}  # fmt: skip


def shapes_is_complete(out_dir: str | os.PathLike, **parameters) -> bool:
    """True when out_dir holds a finished shapes set (its marker written last), made with these parameters
    (seed, size, n_train, n_val, n_test; any that are given)."""
    out_dir = Path(out_dir)
    marker = out_dir / MARKER_NAME
    if not marker.is_file() or (out_dir / WRITING_NAME).exists():
        return False
    try:
        written = json.loads(marker.read_text())["parameters"]
    except (ValueError, KeyError):
        return False
    if any(written.get(key) != value for key, value in parameters.items()):
        return False
    total = written["n_train"] + written["n_val"] + written["n_test"]
    images = out_dir / "VOCdevkit" / "VOC2012" / "JPEGImages"
    return images.is_dir() and sum(1 for _ in images.iterdir()) == total


def make_shapes(
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    size: int = 128,
    n_train: int = 300,
    n_val: int = 100,
    n_test: int = 100,
    if_missing: bool = False,
) -> Path:
    """Write the shapes dataset (see the module docstring) and return out_dir.

    out_dir: target folder (None: default_shapes_dir()). It receives VOCdevkit/ and shapes.json; a previous
        shapes set there is replaced, but a VOCdevkit that segkit did not generate is never touched (error).
    if_missing: do nothing when out_dir already holds a complete set made with the same parameters.
    The test split gets images and a test.txt, and no masks anywhere.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_shapes_dir()
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if min(n_train, n_val, n_test) < 0 or n_train + n_val + n_test == 0:
        raise ValueError(f"split sizes must be >= 0 and not all 0, got {n_train}/{n_val}/{n_test}")
    params = _parameters(seed, size, n_train, n_val, n_test)
    if if_missing and shapes_is_complete(out_dir, **params):
        return out_dir
    devkit = out_dir / "VOCdevkit"
    ours = (out_dir / MARKER_NAME).exists() or (out_dir / WRITING_NAME).exists()
    if devkit.exists() and not ours:
        raise FileExistsError(
            f"{out_dir} already holds a VOCdevkit/ that was not generated by segkit "
            "(no shapes.json); choose another output folder, e.g. data/shapes"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WRITING_NAME).write_text("shapes generation in progress or interrupted\n")
    (out_dir / MARKER_NAME).unlink(missing_ok=True)
    shutil.rmtree(devkit, ignore_errors=True)
    shutil.rmtree(out_dir / "test-labels", ignore_errors=True)  # where older versions put the test masks

    voc = devkit / "VOC2012"
    split_ids = {
        "train": write_split(voc, "train", n_train, seed, size, voc / "SegmentationClass"),
        "val": write_split(voc, "val", n_val, seed, size, voc / "SegmentationClass"),
        "test": write_split(voc, "test", n_test, seed, size, mask_dir=None),
    }
    split_ids["trainval"] = split_ids["train"] + split_ids["val"]
    for split, ids in split_ids.items():
        write_split_list(voc, split, ids)

    marker = {
        "dataset": "segkit shapes (synthetic, VOC-2012 layout)",
        "parameters": params,
        "classes": {str(k): {"name": VOC_CLASSES[k], "shape": s} for k, (s, _) in SHAPE_CLASSES.items()},
        "test_masks": "not written (the competition's test set comes from `segkit competition setup`)",
    }
    temporary = out_dir / (MARKER_NAME + ".tmp")
    temporary.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(temporary, out_dir / MARKER_NAME)
    (out_dir / WRITING_NAME).unlink()
    return out_dir


def write_split(voc: Path, split: str, count: int, seed: int, size: int, mask_dir: Path | None) -> list[str]:
    """Draw images `<split>_0000` ... of one split into voc/JPEGImages (JPEG, quality 90), and their masks
    into mask_dir (palette PNGs; None: no mask is written).  Returns the ids.

    Image i comes from numpy's generator seeded by (seed, split code, i), so it depends on nothing else.
    """
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    if mask_dir is not None:
        mask_dir.mkdir(parents=True, exist_ok=True)
    ids = [f"{split}_{i:04d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
        image, mask = _draw_sample(rng, size)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", format="JPEG", quality=90)
        if mask_dir is not None:
            write_mask(mask_dir / f"{image_id}.png", mask)
    return ids


def write_split_list(voc: Path, split: str, ids: list[str]) -> Path:
    """voc/ImageSets/Segmentation/<split>.txt, one id per line."""
    path = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def make_hidden_test_set(images_dir: str | os.PathLike, masks_dir: str | os.PathLike, seed: int,
                         size: int = 128, n_test: int = 100) -> list[str]:
    """A test split drawn from `seed`: images in the VOC layout under images_dir, masks in masks_dir.

    images_dir receives VOCdevkit/VOC2012/JPEGImages/test_<i>.jpg and ImageSets/Segmentation/test.txt,
    which is all `segkit predict --root images_dir` needs: it is what students get.  masks_dir receives
    test_<i>.png (class indices, 255 = void), which they never see.  The images are exactly those of
    `make_shapes(seed=seed)`'s test split, so with a public seed the masks are public too: the competition
    set-up draws a secret one.  Returns the ids.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if n_test < 2:
        raise ValueError(f"a test set needs at least 2 images, got {n_test}")
    voc = Path(images_dir) / "VOCdevkit" / "VOC2012"
    ids = write_split(voc, "test", n_test, seed, size, Path(masks_dir))
    write_split_list(voc, "test", ids)
    return ids
