"""Session 2 exercises: the dataset and joint image + mask augmentation.

    joint_random_crop    one random window, the same for the image and the mask; pad first when the image is
                         smaller than the crop: the image with 0, the mask with 255 (void)
    resize_mask_nearest  resize a mask with nearest neighbour (never blend class indices)
    window_starts        where the windows of sliding-window inference start along one axis

How the crop is checked: its test images *encode where each pixel came from*. Channel 0 holds the pixel's
mask value, channel 1 its row + 1 and channel 2 its column + 1 (0 is left for padding). So from the cropped
image alone the checker can tell, for every output pixel, which input pixel it is (or that it is padding),
and whether the cropped mask holds that pixel's label: a crop that moves the image and the mask by
different windows is caught, whatever window a random draw picked. That the window is random at all is
checked on the function as a whole: 200 crops, each after another seed, must reach every possible row and
column.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segkit.course.exercises.checker import Exercise, allclose, register, seed_all
from segkit.course.exercises.s01 import random_mask
from segkit.inference import window_starts as segkit_window_starts

VOID = 255

# ------------------------------------------------------------------------------------- joint random crop


def joint_random_crop(
    image: torch.Tensor, mask: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the same random size x size window out of `image` and `mask`.

    image: (C, H, W) float; mask: (H, W) int64, 255 = void. Returns (image (C, size, size),
    mask (size, size)).

    Along a side shorter than `size`, both are first padded by d = size - side on *both* ends (image with 0,
    which is the mean colour after normalisation; mask with 255, so the padding is ignored by the loss),
    like torchvision.transforms.v2.RandomCrop(size, pad_if_needed=True). Then one window is drawn,

        top  ~ U{0, ..., H' - size},   left ~ U{0, ..., W' - size}      (H', W' = padded size)

    with torch.randint (top first, each only when there is a choice), and applied to both. With the same
    torch seed this draws exactly what v2.RandomCrop draws.
    """
    height, width = mask.shape[-2:]
    pad_h, pad_w = max(size - height, 0), max(size - width, 0)
    if pad_h or pad_w:
        image = F.pad(image, [pad_w, pad_w, pad_h, pad_h], value=0.0)  # (left, right, top, bottom)
        mask = F.pad(mask, [pad_w, pad_w, pad_h, pad_h], value=VOID)
        height, width = height + 2 * pad_h, width + 2 * pad_w
    top = int(torch.randint(0, height - size + 1, size=())) if height > size else 0
    left = int(torch.randint(0, width - size + 1, size=())) if width > size else 0
    return image[..., top : top + size, left : left + size], mask[top : top + size, left : left + size]


def encoded_sample(rng: np.random.Generator, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A test sample whose image says where each pixel came from (see the module docstring).

    Returns image (3, height, width) float32 = (mask value, row + 1, column + 1) and mask (height, width)
    int64 with random labels and a void band.
    """
    mask = torch.as_tensor(random_mask(rng, height, width, range(21), block=2), dtype=torch.int64)
    rows = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([mask.float(), rows, cols]), mask


def _crop_cases(rng) -> list[tuple[str, tuple]]:
    cases = [
        ("a 40x50 sample, crop 16", (*encoded_sample(rng, 40, 50), 16)),
        ("a 33x21 sample, crop 20", (*encoded_sample(rng, 33, 21), 20)),
        ("crop as large as the image (nothing to choose)", (*encoded_sample(rng, 12, 12), 12)),
        ("image smaller than the crop: pad (image 0, mask 255)", (*encoded_sample(rng, 10, 7), 16)),
        ("too short only: 9x40, crop 12", (*encoded_sample(rng, 9, 40), 12)),
        ("too narrow only: 30x5, crop 8", (*encoded_sample(rng, 30, 5), 8)),
    ]
    for draw in range(1, 5):
        cases.append((f"another 24x24 sample, crop 9 (draw {draw})", (*encoded_sample(rng, 24, 24), 9)))
    return cases


def _runs_of_consecutive(values: torch.Tensor) -> bool:
    return bool((values[1:] - values[:-1] == 1).all())


def check_crop(got, expected) -> str | None:
    """Compare a crop of an encoded sample with the reference's crop *by its properties*: a random window
    need not be the reference's window, but it must be one window of the (padded) input, the same for the
    image and the mask, with 0 / 255 where there was no input pixel."""
    if not isinstance(got, tuple | list) or len(got) != 2:
        return f"return a pair (image, mask), got {type(got).__name__}"
    image, mask = (torch.as_tensor(x) for x in got)
    expected_image, expected_mask = expected
    if tuple(image.shape) != tuple(expected_image.shape) or tuple(mask.shape) != tuple(expected_mask.shape):
        return (
            f"expected an image of shape {tuple(expected_image.shape)} and a mask of shape "
            f"{tuple(expected_mask.shape)}, got {tuple(image.shape)} and {tuple(mask.shape)}"
        )
    if mask.is_floating_point():
        return f"the mask must stay an integer tensor (int64), got dtype {mask.dtype}"
    padding = image[1] == 0  # row code 0: no input pixel there
    if (image[:, padding] != 0).any():
        return "pad the image with 0: some padded image pixels are not 0"
    if (mask[padding] != VOID).any():
        value = int(mask[padding][mask[padding] != VOID][0])
        return f"pad the mask with 255 (void): found {value} in the mask where the image is padding"
    inside = ~padding
    misaligned = inside & (mask != image[0].round().long())
    if misaligned.any():
        row, col = (int(i) for i in misaligned.nonzero()[0])
        return (
            f"image and mask are not aligned: output pixel ({row}, {col}) of the image shows input pixel "
            f"({int(image[1, row, col]) - 1}, {int(image[2, row, col]) - 1}) labelled "
            f"{int(image[0, row, col])}, but your mask there says {int(mask[row, col])} — the image and the "
            "mask must be cut with the same window (draw top/left once and use them for both)"
        )
    kept_rows = inside.any(dim=1).nonzero().flatten()
    kept_cols = inside.any(dim=0).nonzero().flatten()
    expected_inside = expected_image[1] != 0
    want_rows, want_cols = int(expected_inside.any(1).sum()), int(expected_inside.any(0).sum())
    if len(kept_rows) != want_rows or len(kept_cols) != want_cols:
        return (
            f"the crop should keep {want_rows} rows and {want_cols} columns of the input "
            f"(all of a side shorter than the crop, else `size`), it keeps {len(kept_rows)} and "
            f"{len(kept_cols)}: pad only where the input is smaller than the crop"
        )
    block = inside[kept_rows[0] : kept_rows[-1] + 1, kept_cols[0] : kept_cols[-1] + 1]
    if not (_runs_of_consecutive(kept_rows) and _runs_of_consecutive(kept_cols) and block.all()):
        return "the input pixels in your crop do not form one rectangle: pad only around the image"
    region = image[1:, kept_rows[0] : kept_rows[-1] + 1, kept_cols[0] : kept_cols[-1] + 1]
    row_codes, col_codes = region[0, :, 0], region[1, 0, :]
    one_window = (
        _runs_of_consecutive(row_codes)
        and _runs_of_consecutive(col_codes)
        and bool((region[0] == row_codes[:, None]).all() and (region[1] == col_codes[None, :]).all())
    )
    if not one_window:
        return (
            "the output is not one window of the input: its rows/columns are not consecutive input rows/"
            "columns in order (a flip, a resize or a shuffle?)"
        )
    return None


RANDOMNESS_DRAWS = 200
"""How many crops the whole-function check draws (each after a different seed)."""


def check_crop_is_random(crop) -> str | None:
    """Crop one 24 x 24 encoded sample to 9 x 9 RANDOMNESS_DRAWS times, each after another seed, and read
    the window's top-left corner from the image codes. A uniform draw reaches all 16 top rows and all 16
    left columns (the chance that 200 draws miss one of 16 values is 16 (15/16)^200 < 1e-4; the draws are
    seeded, so the verdict is the same every time) and does not tie left to top."""
    image, mask = encoded_sample(np.random.default_rng(0), 24, 24)
    corners = set()
    for draw in range(RANDOMNESS_DRAWS):
        seed_all(10_000 + draw)
        cropped = torch.as_tensor(crop(image.clone(), mask.clone(), 9)[0])
        corners.add((int(cropped[1, 0, 0]) - 1, int(cropped[2, 0, 0]) - 1))
    tops, lefts = {top for top, _ in corners}, {left for _, left in corners}
    if len(corners) == 1:
        (top, left), = corners
        return (
            f"in {RANDOMNESS_DRAWS} calls (each after another seed) your crop always started at row {top}, "
            f"column {left}: the window must be drawn at random, top ~ U{{0..H-size}} and "
            "left ~ U{0..W-size}"
        )
    if len(tops) < 16 or len(lefts) < 16:
        return (
            f"in {RANDOMNESS_DRAWS} calls your crop started at only {len(tops)} of the 16 possible rows and "
            f"{len(lefts)} of the 16 possible columns of a 24x24 image (crop 9): draw top from 0..H-size and "
            "left from 0..W-size, every value equally likely"
        )
    if all(top == left for top, left in corners):
        return (
            f"in {RANDOMNESS_DRAWS} calls your crop's top always equalled its left: draw them separately "
            "(two random numbers), or the window only moves along the diagonal"
        )
    return None


register(Exercise(
    name="joint_random_crop",
    description="one random size x size window cut from image and mask alike; pad image 0 / mask 255 first",
    reference=joint_random_crop,
    make_cases=_crop_cases,
    hint="draw top and left ONCE (torch.randint) and slice image[..., top:top+size, left:left+size] and "
         "mask[top:top+size, left:left+size] with them; calling a random crop twice (once per tensor) draws "
         "two different windows. When a side is shorter than size, F.pad the image with 0 and the mask "
         "with 255 first",
    compare=check_crop,
    whole_check=check_crop_is_random,
))


# ------------------------------------------------------------------------------- nearest-neighbour resize


def resize_mask_nearest(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a mask with nearest neighbour: (H, W) int64 -> (h, w) int64.

    Output pixel (i, j) takes the input pixel (floor(i * H / h), floor(j * W / w)): the convention of
    F.interpolate(mode="nearest") and of torchvision.transforms.v2.Resize on a tv_tensors.Mask. No new
    values appear: every output label is a label of the input (blending 0 = background and 15 = person
    bilinearly would invent 7 = car).
    """
    resized = F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest")
    return resized[0, 0].to(mask.dtype)


def _resize_cases(rng) -> list[tuple[str, tuple]]:
    def mask(height, width, classes=(0, 15, 255)):
        return torch.as_tensor(random_mask(rng, height, width, classes, block=3), dtype=torch.int64)

    return [
        ("halve a 24x32 mask", (mask(24, 32), (12, 16))),
        ("double a 10x7 mask", (mask(10, 7), (20, 14))),
        ("shrink 30x30 to 11x17 (not a whole factor)", (mask(30, 30, range(21)), (11, 17))),
        ("grow 9x13 to 20x25", (mask(9, 13, range(21)), (20, 25))),
        ("same size: nothing changes", (mask(8, 8), (8, 8))),
        ("to a single pixel", (mask(6, 5), (1, 1))),
    ]


def _compare_masks(got, expected) -> str | None:
    if isinstance(got, torch.Tensor) and got.is_floating_point():
        return f"return an integer mask (int64 class indices), got dtype {got.dtype}"
    message = allclose(got, expected)
    if message is None:
        return None
    new_values = set(torch.as_tensor(got).unique().tolist()) - set(expected.unique().tolist())
    if new_values:
        return f"your mask has values that are in no input pixel: {sorted(new_values)[:5]} — {message}"
    return message


register(Exercise(
    name="resize_mask_nearest",
    description="resize a mask with nearest neighbour: output (i, j) <- input (floor(i*H/h), floor(j*W/w))",
    reference=resize_mask_nearest,
    make_cases=_resize_cases,
    hint="rows = torch.arange(h) * H // h and cols = torch.arange(w) * W // w, then "
         "mask[rows[:, None], cols[None, :]] (or F.interpolate on mask[None, None].float() with "
         "mode='nearest', then back to int64); bilinear blends class indices into labels that mean "
         "something else",
    compare=_compare_masks,
))


# ---------------------------------------------------------------------------------- sliding windows


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of sliding windows along one axis of `length` pixels (length >= window >= stride).

    Windows start at 0, stride, 2 * stride, ... and the last one is moved back to start at length - window,
    so that it ends exactly at the border and every pixel is covered:
    ceil((length - window) / stride) + 1 windows. Example: length 7, window 4, stride 2 -> [0, 2, 3].
    (segkit.inference.window_starts, used by sliding-window inference.)
    """
    return segkit_window_starts(length, window, stride)


def _window_cases(rng) -> list[tuple[str, tuple]]:
    return [
        ("length 7, window 4, stride 2", (7, 4, 2)),
        ("the windows fit exactly: 10, 4, 3", (10, 4, 3)),
        ("the last window must be moved back: 500, 128, 96", (500, 128, 96)),
        ("image as large as the window", (64, 64, 32)),
        ("stride = window (no overlap)", (100, 32, 32)),
        ("stride 1", (6, 3, 1)),
        ("random", (int(rng.integers(200, 400)), 96, int(rng.integers(20, 96)))),
    ]


register(Exercise(
    name="window_starts",
    description="start offsets of sliding windows along one axis, the last one ending at the border",
    reference=window_starts,
    make_cases=_window_cases,
    hint="n = ceil((length - window) / stride) + 1 windows; window i starts at min(i * stride, length - "
         "window). range(0, length - window + 1, stride) alone misses the border when the stride does not "
         "divide length - window",
))
