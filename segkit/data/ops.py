"""Operations that take a dataset and return a new dataset: subset, filter, map, concat, split, repeat.

Style: plain functions, each returning a dataset; nothing is copied or decoded in advance.

    train = VOCSegmentation(root, "train")                       # no transforms: raw samples
    with_cats = filter_samples(train, contains_class(8))         # reads the masks only, never an image
    first_100 = subset(train, slice(0, 100))
    part_a, part_b = random_split(train, [0.8, 0.2], seed=0)
    augmented = map_samples(part_a, train_transforms(crop_size=320))
    bigger = concat(train, repeat(with_cats, 3))                 # show the cat images 4 times per epoch
    images = images_only(VOCSegmentation(root, "val", eval_transforms()))   # (image, None): no mask read

What a dataset offers here (VOCSegmentation, FolderDataset, CachedDataset and every result below):

    len(ds), ds[i] -> (image, mask)    image tv_tensors.Image (3, H, W), mask tv_tensors.Mask (H, W) int64,
                                       255 = void, or None for a split without labels
    ds.image(i)                        the image alone, transformed alone; the mask file is never opened
    ds.sample(i)                       a LazySample: the values of ds[i], each computed when first read
    ds.ids, ds.classes, ds.num_classes, ds.palette, ds.has_masks
    ds.image_path(i), ds.mask_path(i)  the files behind item i (not after map_samples: its items are no
                                       longer the files' content)

Every result keeps the class names and palette of its source. subset, filter_samples, random_split,
concat and repeat all give a `SampleList`: a list of (source dataset, index) pairs, so item i is simply
`source[index]` and a subset of a subset still points straight at the original dataset.

Order matters for speed: filter before you add transforms. `filter_samples` calls the predicate on
`ds.sample(i)`; on a dataset without transforms reading `.mask` decodes the mask PNG only, whereas after
`map_samples` (or with dataset transforms) both fields must be made together, since a random transform
draws one crop for the image and the mask.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Sequence

import numpy as np
import torch

from segkit.data.masks import VOID_INDEX
from segkit.data.samples import LazySample


def _as_int(value, what: str) -> int:
    """`value` as a Python int: ints and numpy / torch integers are accepted; bools are refused (Python
    counts True as the int 1, so `subset(ds, [True])` would silently mean item 1)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{what} must be an integer, got the bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r} ({type(value).__name__})") from None


def _palette_difference(first, other) -> str | None:
    """None when the two palettes (sequences of (r, g, b)) hold the same colours, else where they differ."""
    first = [tuple(int(c) for c in colour) for colour in first]
    other = [tuple(int(c) for c in colour) for colour in other]
    if len(first) != len(other):
        return f"{len(first)} vs {len(other)} colours"
    for index, (a, b) in enumerate(zip(first, other, strict=True)):
        if a != b:
            return f"class {index} is {a} in one, {b} in the other"
    return None


def _check_compatible(datasets: Sequence, what: str = "cannot combine datasets") -> None:
    """All `datasets` have the classes, palette and has_masks of the first; the error names the positions
    (0 = the first dataset) and the datasets that differ."""
    first = datasets[0]
    first_masks = getattr(first, "has_masks", True)
    for position, other in enumerate(datasets[1:], start=1):
        pair = f"dataset 0 {first!r} and dataset {position} {other!r}"
        if tuple(other.classes) != tuple(first.classes):
            raise ValueError(
                f"{what} with different classes: {pair}; dataset 0 has {list(first.classes)}, "
                f"dataset {position} has {list(other.classes)}"
            )
        difference = _palette_difference(first.palette, other.palette)
        if difference is not None:
            raise ValueError(f"{what} with different palettes: {pair} ({difference})")
        if getattr(other, "has_masks", True) != first_masks:
            labelled, unlabelled = (0, position) if first_masks else (position, 0)
            raise ValueError(
                f"{what} with and without masks: {pair}; dataset {labelled} has masks, dataset {unlabelled} "
                f"has none, so their samples would mix (image, mask) and (image, None). For images only, "
                f"pass images_only(dataset {labelled}); to train, give dataset {unlabelled} its masks"
            )


class SampleList:
    """A dataset whose item i is item `entries[i][1]` of the dataset `entries[i][0]`.

    entries: list of (source dataset, index in that source) pairs. All sources must have the same classes,
    palette and has_masks; classes and palette are taken from the first. `name` says how the list was
    made (for repr).
    """

    def __init__(self, entries: list[tuple[object, int]], name: str, classes=None, palette=None):
        self.entries = entries
        self.name = name
        sources = self.sources
        if sources:
            _check_compatible(sources, f"{name}: cannot combine datasets")
        if classes is None or palette is None:
            if not sources:
                raise ValueError(f"{name}: an empty dataset needs its classes and palette given explicitly")
            classes, palette = sources[0].classes, sources[0].palette
        self.classes = tuple(classes)
        self.palette = palette

    @property
    def sources(self) -> list:
        """The distinct datasets the entries point into, in order of first appearance."""
        seen = {}
        for source, _ in self.entries:
            seen.setdefault(id(source), source)
        return list(seen.values())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return all(getattr(source, "has_masks", True) for source in self.sources)

    @property
    def ids(self) -> list[str]:
        return [source.ids[index] for source, index in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def _entry(self, index: int) -> tuple[object, int]:
        index = operator.index(index)
        if not -len(self.entries) <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {self!r}")
        return self.entries[index]

    def __getitem__(self, index: int):
        source, source_index = self._entry(index)
        return source[source_index]

    def image(self, index: int):
        source, source_index = self._entry(index)
        return source.image(source_index)

    def sample(self, index: int) -> LazySample:
        source, source_index = self._entry(index)
        return source.sample(source_index)

    def image_path(self, index: int):
        source, source_index = self._entry(index)
        return source.image_path(source_index)

    def mask_path(self, index: int):
        source, source_index = self._entry(index)
        return source.mask_path(source_index)

    def __repr__(self) -> str:
        return f"SampleList({self.name}, {len(self)} samples)"


def _entries(dataset) -> list[tuple[object, int]]:
    """(source, index) pairs of every item of `dataset`; a SampleList gives its own (no nesting)."""
    if isinstance(dataset, SampleList):
        return list(dataset.entries)
    return [(dataset, index) for index in range(len(dataset))]


def _is_index_sequence(indices) -> bool:
    """True for a list, tuple, range or 1-d (or more) numpy array / torch tensor; False for a single int,
    a string, a set or a generator."""
    if isinstance(indices, (np.ndarray, torch.Tensor)):
        return indices.ndim > 0
    return isinstance(indices, (Sequence, range)) and not isinstance(indices, (str, bytes))


def subset(dataset, indices: Sequence[int] | slice | range) -> SampleList:
    """The items `indices` of `dataset`, in that order: a sequence of ints (a list, a range, a 1-d numpy
    array or torch tensor of integers; negative counts from the end, repeats allowed) or a slice,
    e.g. subset(ds, slice(0, 100)), subset(ds, [3, 1, 4]) or subset(ds, np.array([0, 2])).
    A single int is refused (write subset(ds, [3])), and so are bools: for a boolean mask over the items
    pass np.flatnonzero(mask)."""
    entries = _entries(dataset)
    if isinstance(indices, slice):
        chosen = range(len(entries))[indices]
    elif not _is_index_sequence(indices):
        hint = ""
        if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
            hint = f"; for the one item {indices} write subset(ds, [{indices}])"
        raise TypeError(
            f"subset: indices must be a sequence of ints, a range or a slice, got {indices!r} "
            f"({type(indices).__name__}){hint}"
        )
    else:
        chosen = []
        for position, index in enumerate(indices):
            index = _as_int(index, f"subset: indices[{position}]")
            if not -len(entries) <= index < len(entries):
                raise IndexError(f"subset: index {index} out of range for {dataset!r} ({len(entries)} items)")
            chosen.append(index)
    entries = [entries[i] for i in chosen]
    return SampleList(entries, f"subset of {dataset!r}", dataset.classes, dataset.palette)


def filter_samples(dataset, predicate: Callable[[LazySample], bool]) -> SampleList:
    """The items of `dataset` for which `predicate(dataset.sample(i))` is true, in their order.

    The predicate gets a LazySample: it reads `sample.mask`, `sample.image` or `sample.id`, and only what
    it reads is decoded (on a dataset without transforms). Runs once over the dataset, now.
    A contains_class predicate is first checked against the dataset's classes (see contains_class).
    """
    class_index = getattr(predicate, "class_index", None)  # set by contains_class
    if class_index is not None:
        _check_class_index(class_index, dataset)
    keep = [index for index in range(len(dataset)) if predicate(dataset.sample(index))]
    entries = _entries(dataset)
    return SampleList([entries[i] for i in keep], f"filter of {dataset!r}", dataset.classes, dataset.palette)


def _check_class_index(class_index: int, dataset) -> None:
    """A class index must name a class of `dataset` (0 <= class_index < num_classes) or be 255, the void
    label of the masks (VOID_INDEX): a mask never holds any other value, so a filter on it would keep
    nothing, silently."""
    num_classes = len(dataset.classes)
    if not 0 <= class_index < num_classes and class_index != VOID_INDEX:
        raise ValueError(
            f"contains_class({class_index}): class index {class_index} is not a class of {dataset!r}, which "
            f"has {num_classes} classes (0 to {num_classes - 1}), or {VOID_INDEX} = void"
        )


def contains_class(class_index: int) -> Callable[[LazySample], bool]:
    """A predicate for filter_samples: true when the sample's mask has at least one pixel of `class_index`.

    class_index: an int (numpy integers too; bools are refused). filter_samples checks it against the
    dataset: 0 <= class_index < len(dataset.classes), or 255 (VOID_INDEX: samples with void pixels);
    any other index is an error naming it and the number of classes. The predicate carries the index as
    its attribute `class_index`.
    """
    class_index = _as_int(class_index, "contains_class: class_index")
    if class_index < 0:
        raise ValueError(f"contains_class: class_index must be >= 0, got {class_index}")

    def has_class(sample: LazySample) -> bool:
        mask = sample.mask
        if mask is None:
            raise ValueError(f"contains_class({class_index}): sample {sample.id!r} has no mask")
        return bool((mask == class_index).any())

    has_class.__name__ = f"contains_class({class_index})"
    has_class.class_index = class_index
    return has_class


def concat(*datasets) -> SampleList:
    """The items of each dataset one after the other.

    All must have the same classes, the same palette and all or none masks (has_masks): a labelled split
    and an unlabelled one (read with require_masks=False) are refused, since their samples would mix
    (image, mask) and (image, None); concat images_only(labelled) with the unlabelled one instead.
    The errors name the datasets by position (0 = the first argument).
    """
    if not datasets:
        raise ValueError("concat needs at least one dataset")
    _check_compatible(datasets, "concat: cannot combine datasets")
    entries = [entry for dataset in datasets for entry in _entries(dataset)]
    names = " + ".join(repr(dataset) for dataset in datasets)
    return SampleList(entries, f"concat of {names}", datasets[0].classes, datasets[0].palette)


def repeat(dataset, times: int) -> SampleList:
    """`dataset` `times` times in a row: item i is item i % len(dataset).

    times: a positive int (numpy integers too; bools and floats are refused)."""
    times = _as_int(times, "repeat: times")
    if times < 1:
        raise ValueError(f"repeat: times must be a positive integer, got {times}")
    entries = _entries(dataset) * times
    return SampleList(entries, f"{times} x {dataset!r}", dataset.classes, dataset.palette)


def split_lengths(total: int, lengths: Sequence[float]) -> list[int]:
    """Sizes of the parts of a split of `total` items, by the rule of torch.utils.data.random_split.

    lengths: fractions when their sum is close to 1 (math.isclose) and at most 1, each in [0, 1]: part k
    gets floor(lengths[k] * total) items, and the items left over go one by one to the first parts.
    Otherwise sizes: integers (Python or numpy; not bools) >= 0 summing to `total`.
    So [0.8, 0.2] and np.array([0.5, 0.5]) are fractions, [7, 3] and np.array([6, 4]) sizes; like torch,
    [1] (sum 1) is the fraction 1, i.e. all the items.
    """
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    for position, value in enumerate(lengths):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"random_split: lengths[{position}] must be a number, got {value!r}")
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        if any(not 0 <= f <= 1 for f in lengths):
            raise ValueError(f"random_split: fractions {_plain_numbers(lengths)} must each lie in [0, 1]")
        sizes = [math.floor(f * total) for f in lengths]
        for i in range(total - sum(sizes)):
            sizes[i % len(sizes)] += 1
        return sizes
    if not all(isinstance(n, numbers.Integral) for n in lengths):
        raise ValueError(
            f"random_split: lengths {_plain_numbers(lengths)} must be fractions that sum to 1 or integer "
            f"sizes that sum to the {total} samples"
        )
    sizes = [int(n) for n in lengths]
    if any(n < 0 for n in sizes) or sum(sizes) != total:
        raise ValueError(f"random_split: lengths {sizes} must be >= 0 and sum to the {total} samples")
    return sizes


def _plain_numbers(values: list) -> list:
    """Python ints/floats for an error message: [6, 6] rather than [np.int64(6), np.int64(6)]."""
    return [value.item() if isinstance(value, np.generic) else value for value in values]


def random_split(dataset, lengths: Sequence[float], seed: int = 0) -> list[SampleList]:
    """Split `dataset` into parts of random, disjoint items.

    lengths: fractions (summing to 1) or sizes (ints summing to len(dataset)), decided as
        torch.utils.data.random_split does, see split_lengths.
    seed: the permutation is torch.randperm(len(dataset)) from a torch.Generator seeded with `seed`;
    part k takes the next lengths[k] positions of it. Same seed, same parts on every machine.
    """
    sizes = split_lengths(len(dataset), lengths)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    parts, start = [], 0
    for part, size in enumerate(sizes):
        part_set = subset(dataset, order[start : start + size])
        part_set.name = f"part {part} of random_split(seed={seed}) of {dataset!r}"
        parts.append(part_set)
        start += size
    return parts


class Mapped:
    """`fn` applied to every item of `source`: item i is fn(image, mask) for (image, mask) = source[i].

    fn is called like dataset transforms: fn(image, mask) -> (image, mask), and fn(image) -> image when
    there is no mask (image(i), or a split without labels). torchvision v2 transforms and segkit's
    train_transforms / eval_transforms accept both.
    A mapped dataset has no image_path / mask_path: its items are not the files' content any more.
    """

    def __init__(self, source, fn: Callable):
        self.source = source
        self.fn = fn
        self.classes = tuple(source.classes)
        self.palette = source.palette

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return getattr(self.source, "has_masks", True)

    @property
    def ids(self) -> list[str]:
        return list(self.source.ids)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        image, mask = self.source[index]
        if mask is None:
            return self.fn(image), None
        return self.fn(image, mask)

    def image(self, index: int):
        return self.fn(self.source.image(index))

    def sample(self, index: int) -> LazySample:
        return LazySample.from_item(self.source.ids[index], lambda: self[index])

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Mapped({name} of {self.source!r})"


def map_samples(dataset, fn: Callable) -> Mapped:
    """`fn` applied to each item: (image, mask) -> fn(image, mask). See Mapped."""
    return Mapped(dataset, fn)


class ImagesOnly:
    """The images of `source` without their masks: item i is (source.image(i), None).

    For prediction: a mask file is never opened, even when the split has masks. Keeps ids, classes,
    palette and image_path; has_masks is False.
    """

    has_masks = False

    def __init__(self, source):
        self.source = source
        self.classes = tuple(source.classes)
        self.palette = source.palette

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[str]:
        return list(self.source.ids)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source.image(index), None

    def image(self, index: int):
        return self.source.image(index)

    def sample(self, index: int) -> LazySample:
        return LazySample(self.source.ids[index], lambda: self.source.image(index), None)

    def image_path(self, index: int):
        return self.source.image_path(index)

    def mask_path(self, index: int) -> None:
        return None

    def __repr__(self) -> str:
        return f"ImagesOnly({self.source!r})"


def images_only(dataset) -> ImagesOnly:
    """`dataset` without masks: items (image, None), no mask file ever opened. See ImagesOnly."""
    return ImagesOnly(dataset)
