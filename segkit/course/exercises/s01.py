"""Session 1 exercises: semantic segmentation masks and the statistics of a dataset.

    class_frequencies   share of the labelled pixels that belong to each class, over a whole dataset
                        (void, 255, is not a class: it counts neither above nor below the fraction bar)
    rgb_to_mask         a colour-coded mask (VOC palette colours) back to class indices, void kept as 255
    images_per_class    in how many images each class occurs at least once
"""

from __future__ import annotations

import numpy as np

from segkit.course.exercises.checker import Exercise, allclose, register
from segkit.data.masks import VOC_PALETTE, VOID_INDEX

# ------------------------------------------------------------------------------------------ test masks


def random_mask(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: list[int] | tuple[int, ...],
    block: int = 4,
    void_border: bool = True,
) -> np.ndarray:
    """A blocky random mask, (height, width) uint8: regions of `block` x `block` pixels, each a random
    class of `classes`; with `void_border`, every pixel whose right or lower neighbour has another label
    becomes 255, a thin void band between regions as in VOC."""
    rows, cols = -(-height // block), -(-width // block)
    coarse = rng.choice(np.asarray(classes), size=(rows, cols))
    mask = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width].astype(np.uint8)
    if void_border:
        edge = np.zeros(mask.shape, dtype=bool)
        edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
        edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
        mask[edge] = VOID_INDEX
    return mask


# ------------------------------------------------------------------------------------- class frequencies


def class_frequencies(masks: list[np.ndarray], num_classes: int = 21) -> np.ndarray:
    """Share of the labelled pixels of all `masks` together that belong to each class.

    masks: a list of (H, W) integer arrays (sizes may differ), class indices 0..num_classes-1, 255 = void.
    Returns (num_classes,) float64:

        frequency[c] = n_c / sum_k n_k,    n_c = number of pixels labelled c in all masks together

    Void pixels are not labelled: they count neither in n_c nor in the total. The shares sum to 1; when no
    pixel is labelled at all, every share is 0. This is dataset_stats(...).frequencies: pixels are pooled
    over the dataset (a big image weighs more than a small one), not averaged image by image.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[labels != VOID_INDEX]
        counts += np.bincount(labels, minlength=num_classes)[:num_classes]
    total = counts.sum()
    return counts / total if total else np.zeros(num_classes, dtype=np.float64)


def _frequency_cases(rng) -> list[tuple[str, tuple]]:
    voc_like = [random_mask(rng, 24, 32, [0, 0, 0, 15, 12]) for _ in range(3)]
    # Three masks of one size without void: as many labelled pixels in each, so averaging per image gives
    # the pooled answer here, and that mistake shows on the case written for it (different sizes).
    same_size = [random_mask(rng, 24, 32, [0, 0, 0, 15, 12], void_border=False) for _ in range(3)]
    mixed_sizes = [random_mask(rng, 40, 40, [0, 0, 7], block=8), random_mask(rng, 8, 12, [3, 16])]
    much_void = random_mask(rng, 16, 16, [0, 1, 2, 3], block=2)  # 2x2 regions: about half is void
    all_void = np.full((6, 9), VOID_INDEX, dtype=np.uint8)
    return [
        ("one 24x32 mask with a void band", (voc_like[:1], 21)),
        ("three masks together", (same_size, 21)),
        ("two masks of different sizes (pool the pixels, do not average per image)", (mixed_sizes, 21)),
        ("a mask that is about half void", ([much_void], 21)),
        ("no void at all, 5 classes", ([random_mask(rng, 10, 14, range(5), void_border=False)], 5)),
        ("three masks with void bands (pool the pixels, do not average per image)", (voc_like, 21)),
        ("one all-void mask next to a normal one", ([all_void, voc_like[0]], 21)),
        ("every pixel void (no labelled pixel: all shares 0)", ([all_void], 21)),
        ("only background", ([np.zeros((7, 5), dtype=np.uint8)], 21)),
    ]


register(Exercise(
    name="class_frequencies",
    description="share of the labelled (non-void) pixels of all masks together that belong to each class",
    reference=class_frequencies,
    make_cases=_frequency_cases,
    hint="drop the 255 pixels first (labels[labels != 255]), count each class over ALL masks with "
         "np.bincount(labels, minlength=num_classes), then divide by the total count of labelled pixels; "
         "if there is none, return zeros (not NaN)",
))


# ------------------------------------------------------------------------------------------ RGB -> mask

VOID_COLOUR = VOC_PALETTE[VOID_INDEX]  # (224, 224, 192)


def rgb_to_mask(rgb: np.ndarray, num_classes: int = 21) -> np.ndarray:
    """Turn a colour-coded mask back into class indices with the VOC palette.

    rgb: (H, W, 3) uint8; every pixel has the palette colour of a class 0..num_classes-1 or the void colour
        (224, 224, 192).
    Returns (H, W) uint8: class indices, 255 where the colour is the void colour.
    Raises ValueError for a colour that is neither (naming the colour and one pixel that has it).

    The colour (r, g, b) is packed into one integer r * 65536 + g * 256 + b, looked up among the packed
    palette colours. (Better still: never convert a palette PNG to RGB; np.asarray(Image.open(path))
    already holds the indices.)
    """
    rgb = np.asarray(rgb)
    indices = np.array([*range(num_classes), VOID_INDEX])
    packed_palette = np.array([_pack(VOC_PALETTE[i]) for i in indices])
    order = np.argsort(packed_palette)
    packed_palette, indices = packed_palette[order], indices[order]
    packed = _pack((rgb[..., 0], rgb[..., 1], rgb[..., 2]))
    position = np.clip(np.searchsorted(packed_palette, packed), 0, len(indices) - 1)
    unknown = packed_palette[position] != packed
    if unknown.any():
        row, col = (int(i) for i in np.argwhere(unknown)[0])
        raise ValueError(
            f"rgb_to_mask: colour {tuple(int(v) for v in rgb[row, col])} at pixel ({row}, {col}) is not the "
            f"palette colour of a class 0..{num_classes - 1} nor the void colour {VOID_COLOUR}"
        )
    return indices[position].astype(np.uint8)


def _pack(rgb) -> np.ndarray:
    red, green, blue = (np.asarray(channel, dtype=np.int64) for channel in rgb)
    return red * 65536 + green * 256 + blue


def _colour(mask: np.ndarray) -> np.ndarray:
    return np.asarray(VOC_PALETTE, dtype=np.uint8)[mask]


def _rgb_cases(rng) -> list[tuple[str, tuple]]:
    all_classes = np.arange(21, dtype=np.uint8).reshape(3, 7)
    return [
        ("a 20x24 mask with a void band", (_colour(random_mask(rng, 20, 24, [0, 0, 8, 15])),)),
        ("all 21 classes once, no void", (_colour(all_classes),)),
        ("mostly void", (_colour(random_mask(rng, 12, 12, [0, 5, 9, 20], block=2)),)),
        ("every pixel void", (_colour(np.full((4, 6), VOID_INDEX, dtype=np.uint8)),)),
        ("only background (black)", (_colour(np.zeros((5, 5), dtype=np.uint8)),)),
        ("a tall 30x4 strip", (_colour(random_mask(rng, 30, 4, range(21), block=3)),)),
        ("a colour that is in no palette entry must be refused (ValueError)", (_with_unknown_colour(rng),)),
    ]


def _with_unknown_colour(rng) -> np.ndarray:
    """A colour-coded mask with one pixel of a colour that no class has (a slightly changed class colour,
    as a JPEG or a resize would make): rgb_to_mask must raise ValueError instead of guessing."""
    rgb = _colour(random_mask(rng, 10, 12, [0, 3, 15]))
    row, col = int(rng.integers(10)), int(rng.integers(12))
    rgb[row, col] = np.asarray(VOC_PALETTE[15], dtype=np.int64) + [1, 0, 0]  # (193, 128, 128): no class
    return rgb


def _same_indices(got, expected) -> str | None:
    """allclose, plus a pointed message when void pixels came out as another class."""
    message = allclose(got, expected)
    if message is None:
        return None
    got_array = np.asarray(got)
    if got_array.shape == expected.shape:
        lost = (expected == VOID_INDEX) & (got_array != VOID_INDEX)
        if lost.any():
            value = int(got_array[lost][0])
            return f"{int(lost.sum())} void pixels (colour {VOID_COLOUR}) came out as {value}, not 255"
    return message


register(Exercise(
    name="rgb_to_mask",
    description="colour-coded mask (H, W, 3) -> class indices (H, W) with the VOC palette, void kept as 255",
    reference=rgb_to_mask,
    make_cases=_rgb_cases,
    hint="build a lookup from colour to index for classes 0..20 AND for 255 (colour (224, 224, 192)) — a "
         "table that only knows the 21 class colours sends the void border to 0 (background); pack each "
         "colour into one integer, r*65536 + g*256 + b, to compare whole pixels at once; a colour that is "
         "in neither must raise ValueError (never map it to some class)",
    compare=_same_indices,
))


# ------------------------------------------------------------------------------------- images per class


def images_per_class(masks: list[np.ndarray], num_classes: int = 21) -> np.ndarray:
    """In how many of the `masks` each class occurs (at least one pixel): (num_classes,) int64.

    masks: a list of (H, W) integer arrays, class indices 0..num_classes-1, 255 = void (not a class).
    This is dataset_stats(...).image_counts.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        present = np.unique(np.asarray(mask))
        counts[present[present < num_classes]] += 1
    return counts


def _image_count_cases(rng) -> list[tuple[str, tuple]]:
    masks = [random_mask(rng, 16, 16, [0, 0, 0, c]) for c in (1, 1, 3, 15, 15, 15)]
    return [
        ("six masks, one object class each", (masks, 21)),
        ("one mask", (masks[:1], 21)),
        ("a class covering many pixels of one image counts once", ([np.full((8, 8), 7, np.uint8)], 21)),
        ("masks with void only", ([np.full((3, 3), VOID_INDEX, np.uint8)] * 2, 21)),
        ("4 classes, random masks of different sizes",
         ([random_mask(rng, h, w, range(4), block=2) for h, w in ((6, 9), (12, 4), (5, 5))], 4)),
    ]


register(Exercise(
    name="images_per_class",
    description="number of masks in which each class occurs at least once",
    reference=images_per_class,
    make_cases=_image_count_cases,
    hint="for each mask take the set of values present (np.unique), ignore 255, and add 1 for each class "
         "in it — count images, not pixels",
))
