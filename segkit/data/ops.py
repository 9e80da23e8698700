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
import operator
from collections.abc import Callable, Sequence

import torch

from segkit.data.samples import LazySample


def _check_classes(datasets: Sequence) -> None:
    first = datasets[0]
    for other in datasets[1:]:
        if tuple(other.classes) != tuple(first.classes):
            raise ValueError(
                f"cannot combine datasets with different classes: {first!r} has {list(first.classes)}, "
                f"{other!r} has {list(other.classes)}"
            )


class SampleList:
    """A dataset whose item i is item `entries[i][1]` of the dataset `entries[i][0]`.

    entries: list of (source dataset, index in that source) pairs. All sources must have the same classes;
    classes and palette are taken from the first. `name` says how the list was made (for repr).
    """

    def __init__(self, entries: list[tuple[object, int]], name: str, classes=None, palette=None):
        self.entries = entries
        self.name = name
        sources = self.sources
        if sources:
            _check_classes(sources)
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


def subset(dataset, indices: Sequence[int] | slice | range) -> SampleList:
    """The items `indices` of `dataset`, in that order: a list/range of ints (negative counts from the end,
    repeats allowed) or a slice, e.g. subset(ds, slice(0, 100)) or subset(ds, [3, 1, 4])."""
    entries = _entries(dataset)
    if isinstance(indices, slice):
        chosen = range(len(entries))[indices]
    else:
        chosen = []
        for index in indices:
            index = operator.index(index)
            if not -len(entries) <= index < len(entries):
                raise IndexError(f"subset: index {index} out of range for {dataset!r} ({len(entries)} items)")
            chosen.append(index)
    entries = [entries[i] for i in chosen]
    return SampleList(entries, f"subset of {dataset!r}", dataset.classes, dataset.palette)


def filter_samples(dataset, predicate: Callable[[LazySample], bool]) -> SampleList:
    """The items of `dataset` for which `predicate(dataset.sample(i))` is true, in their order.

    The predicate gets a LazySample: it reads `sample.mask`, `sample.image` or `sample.id`, and only what
    it reads is decoded (on a dataset without transforms). Runs once over the dataset, now.
    """
    keep = [index for index in range(len(dataset)) if predicate(dataset.sample(index))]
    entries = _entries(dataset)
    return SampleList([entries[i] for i in keep], f"filter of {dataset!r}", dataset.classes, dataset.palette)


def contains_class(class_index: int) -> Callable[[LazySample], bool]:
    """A predicate for filter_samples: true when the sample's mask has at least one pixel of `class_index`."""

    def has_class(sample: LazySample) -> bool:
        mask = sample.mask
        if mask is None:
            raise ValueError(f"contains_class({class_index}): sample {sample.id!r} has no mask")
        return bool((mask == class_index).any())

    has_class.__name__ = f"contains_class({class_index})"
    return has_class


def concat(*datasets) -> SampleList:
    """The items of each dataset one after the other. All must have the same classes."""
    if not datasets:
        raise ValueError("concat needs at least one dataset")
    _check_classes(datasets)
    entries = [entry for dataset in datasets for entry in _entries(dataset)]
    names = " + ".join(repr(dataset) for dataset in datasets)
    return SampleList(entries, f"concat of {names}", datasets[0].classes, datasets[0].palette)


def repeat(dataset, times: int) -> SampleList:
    """`dataset` `times` times in a row: item i is item i % len(dataset)."""
    if not isinstance(times, int) or times < 1:
        raise ValueError(f"repeat: times must be a positive integer, got {times!r}")
    entries = _entries(dataset) * times
    return SampleList(entries, f"{times} x {dataset!r}", dataset.classes, dataset.palette)


def split_lengths(total: int, lengths: Sequence[float]) -> list[int]:
    """Sizes of the parts of a split of `total` items.

    lengths: integers summing to `total`, or fractions summing to 1. Fractions give floor(f * total)
    items each; the items left over go one by one to the first parts (the rule of
    torch.utils.data.random_split).
    """
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if all(isinstance(n, int) for n in lengths):
        if any(n < 0 for n in lengths) or sum(lengths) != total:
            raise ValueError(f"random_split: lengths {lengths} must be >= 0 and sum to the {total} samples")
        return lengths
    if any(not 0 <= f <= 1 for f in lengths) or not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
        raise ValueError(f"random_split: fractions {lengths} must lie in [0, 1] and sum to 1")
    sizes = [math.floor(f * total) for f in lengths]
    for i in range(total - sum(sizes)):
        sizes[i % len(sizes)] += 1
    return sizes


def random_split(dataset, lengths: Sequence[float], seed: int = 0) -> list[SampleList]:
    """Split `dataset` into parts of random, disjoint items.

    lengths: sizes (ints summing to len(dataset)) or fractions (summing to 1), see split_lengths.
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
