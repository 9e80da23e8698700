"""The first cell of every course notebook: seeds, the size to run at, which dataset, and the sizes to use.

    from segkit.course import setup_notebook
    course = setup_notebook()          # prints which dataset and size it uses and why
    course = setup_notebook("class")   # or choose the size here (else $SEGKIT_SIZE, else "full")

    train_set = VOCSegmentation(course.root, "train", transforms=train_transforms(course.crop_size))
    loader = DataLoader(train_set, batch_size=course.batch_size, shuffle=True)

Three sizes (`course.size`), smallest first:
- "quick" (`SEGKIT_SIZE=quick` or `SEGKIT_QUICK=1`, how the tests run every notebook): the synthetic shapes
  dataset, generated under <data root>/shapes the first time (about half a minute), and tiny sizes;
- "class": the dataset as in full, with sizes that fit a lesson on a laptop CPU (fewer epochs); a notebook
  whose full size takes longer than a lesson allows also shrinks its own extra loops in this size;
- "full" (the default): PASCAL VOC-2012 when it is found under the data root (`data/` or `$SEGKIT_DATA`),
  else the shapes dataset, at the sizes the notebook was written for.

Every notebook's first cell says which sizes it has and how long each took on a 2-core CPU (measured by
bench/notebooks.py). The sizes (`crop_size`, `batch_size`, `epochs`, `max_steps`) are for the notebook's
training cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from segkit import paths
from segkit.data.masks import VOC_CLASSES
from segkit.data.shapes import make_shapes, shapes_is_complete
from segkit.data.voc import find_voc_root
from segkit.inference import default_device

# Sizes per situation: (crop_size, batch_size, epochs, max_steps). max_steps None = whole epochs.
QUICK_SIZES = (64, 4, 1, 8)
SHAPES_SIZES = {"class": (128, 8, 2, None), "full": (128, 8, 6, None)}
VOC_SIZES = {"class": (321, 8, 1, 100), "full": (321, 8, 30, None)}


@dataclass
class CourseSetup:
    """What a notebook needs to know about this machine and this run.

    size: "quick", "class" or "full" (see the module docstring).
    quick: size == "quick": tiny sizes, shapes dataset.
    dataset: "voc" or "shapes".
    root: a folder VOCSegmentation accepts (VOC: the VOC2012 folder; shapes: the folder holding VOCdevkit/).
    classes: class names by index (21 VOC names; shapes uses 6 of them: its objects carry VOC indices).
    num_classes: len(classes) = 21.
    crop_size: training crop (pixels, square).
    batch_size: training batch size.
    epochs: training epochs for the notebook's training runs.
    max_steps: at most this many batches per epoch (pass it as `Trainer(limit_batches=course.max_steps)`);
        None = whole epochs.
    device: the fastest device here: "cuda" when an NVIDIA GPU is available, else "mps" on an Apple-silicon
        GPU, else "cpu" (segkit.inference.default_device).
    """

    size: str
    quick: bool
    dataset: str
    root: Path
    classes: tuple[str, ...]
    num_classes: int
    crop_size: int
    batch_size: int
    epochs: int
    max_steps: int | None
    device: str


def seed_everything(seed: int = 0) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def find_voc(data_root: Path) -> Path | None:
    """The VOC-2012 folder under `data_root`, or None. The shapes set (also VOC layout) does not count."""
    try:
        voc = find_voc_root(data_root)
    except FileNotFoundError:
        return None
    if (data_root / "shapes.json").is_file():  # the data root itself is a generated shapes set
        return None
    return voc


def ensure_shapes(shapes_dir: Path) -> tuple[Path, bool]:
    """Use the shapes set in `shapes_dir` when one is complete there (with any parameters), else generate
    it with the default parameters. Returns (shapes_dir, generated_now)."""
    if shapes_is_complete(shapes_dir):
        return shapes_dir, False
    # A lock file, so that two notebooks started at the same time do not write the same folder together.
    shapes_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(shapes_dir) + ".lock"):
        if shapes_is_complete(shapes_dir):
            return shapes_dir, False
        make_shapes(shapes_dir)
    return shapes_dir, True


def setup_notebook(size: str | None = None, seed: int = 0) -> CourseSetup:
    """Seed everything, choose the size, the dataset and the sizes, print the choice and return it.

    size: "quick", "class" or "full"; None: $SEGKIT_SIZE, else "quick" when $SEGKIT_QUICK=1, else "full".
    """
    seed_everything(seed)
    size = paths.notebook_size(size)
    quick = size == "quick"
    data_root = paths.data_root()
    voc = None if quick else find_voc(data_root)
    if voc is not None:
        dataset, root = "voc", voc
        reason = f"found PASCAL VOC-2012 in {voc}"
        sizes = VOC_SIZES[size]
    else:
        shapes_dir, generated = ensure_shapes(data_root / "shapes")
        dataset, root = "shapes", shapes_dir
        if quick:
            reason = "quick size: small synthetic dataset, tiny sizes"
        else:
            reason = (
                f"VOC-2012 was not found under {data_root} (see data/README.md); using the synthetic dataset"
            )
        if generated:
            reason += f"; generated it now in {shapes_dir}"
        sizes = QUICK_SIZES if quick else SHAPES_SIZES[size]
    crop_size, batch_size, epochs, max_steps = sizes
    device = default_device()
    course = CourseSetup(
        size=size,
        quick=quick,
        dataset=dataset,
        root=root,
        classes=VOC_CLASSES,
        num_classes=len(VOC_CLASSES),
        crop_size=crop_size,
        batch_size=batch_size,
        epochs=epochs,
        max_steps=max_steps,
        device=device,
    )
    steps = "whole epochs" if max_steps is None else f"at most {max_steps} batches per epoch"
    print(f"dataset: {dataset} ({root}) -- {reason}")
    sizes_text = f"crop {crop_size}, batch {batch_size}, {epochs} epoch(s), {steps}"
    print(f"size: {size} -- {sizes_text}; device {device}, seed {seed}")
    return course
