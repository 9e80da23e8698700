"""Datasets made from datasets: subset, filter, map, concat, split, repeat.

Plain functions, each returning a dataset; nothing is copied or decoded in advance. They build on
torch.utils.data: `subset`, `filter_samples`, `repeat` and `random_split` give a `Subset` (torch's
Subset: item i = dataset[indices[i]]), `concat` a `Concat` (torch's ConcatDataset), and `random_split`
splits exactly as torch.utils.data.random_split does (same sizes, same items for the same seed).

    train = VOCSegmentation(root, "train")                       # no transforms: raw samples
    with_cats = filter_samples(train, contains_class(8))         # reads the masks only, never an image
    first_100 = subset(train, slice(0, 100))
    part_a, part_b = random_split(train, [0.8, 0.2], seed=0)
    augmented = map_samples(part_a, train_transforms(crop_size=320))
    bigger = concat(train, repeat(with_cats, 3))                 # show the cat images 4 times per epoch

What a dataset offers here (VOCSegmentation, FolderDataset, CachedDataset and every result below):

    len(ds), ds[i] -> (image, mask)    image tv_tensors.Image (3, H, W), mask tv_tensors.Mask (H, W) int64,
                                       255 = void, or None for a split read with masks="none"
    ds.image(i)                        the image alone, transformed alone; the mask file is never opened
    ds.sample(i)                       a LazySample: the values of ds[i], each computed when first read
    ds.ids, ds.classes, ds.num_classes, ds.palette, ds.has_masks
    ds.image_path(i), ds.mask_path(i)  the files behind item i (not after map_samples: its items are no
                                       longer the files' content)

Every result keeps the class names and palette of its source; its `ids` list is made once, when the
result is made, so reading an id costs O(1). A subset of a subset points straight at the original dataset
(the indices are composed), and `sources(ds)` lists the datasets that really read the files.

Order matters for speed: filter before you add transforms. `filter_samples` calls the predicate on
`ds.sample(i)`; on a dataset without transforms reading `.mask` decodes the mask PNG only, whereas after
`map_samples` (or with dataset transforms) both fields must be made together, since a random transform
draws one crop for the image and the mask.
"""

from __future__ import annotations

import bisect
import numbers
import operator
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.utils.data

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
                f"read dataset {labelled} with masks='none'; to train, give dataset {unlabelled} its masks"
            )


class _SegmentationView:
    """What Subset and Concat add to torch's classes: the metadata of a segmentation dataset and the
    per-item file access, both answered by the dataset that holds item i (`locate(i)`)."""

    classes: tuple[str, ...]
    palette: object
    ids: list[str]

    def locate(self, index: int) -> tuple[object, int]:  # (the dataset holding item index, its index there)
        raise NotImplementedError(f"{type(self).__name__} must say where its items live")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return all(getattr(source, "has_masks", True) for source in sources(self))

    def image(self, index: int):
        dataset, inner = self.locate(index)
        return dataset.image(inner)

    def sample(self, index: int) -> LazySample:
        dataset, inner = self.locate(index)
        return dataset.sample(inner)

    def image_path(self, index: int):
        dataset, inner = self.locate(index)
        return dataset.image_path(inner)

    def mask_path(self, index: int):
        dataset, inner = self.locate(index)
        return dataset.mask_path(inner)


class Subset(_SegmentationView, torch.utils.data.Subset):
    """torch.utils.data.Subset (item i = dataset[indices[i]]) of a segmentation dataset.

    A Subset of a Subset is made directly over the original dataset, with the indices composed. `name` says
    how it was made (for repr). ids = [dataset.ids[j] for j in indices], made once. Items come from torch's
    own Subset.__getitem__.
    """

    def __init__(self, dataset, indices: Sequence[int], name: str = "subset"):
        indices = [int(i) for i in indices]
        if isinstance(dataset, Subset):
            indices = [dataset.indices[i] for i in indices]
            dataset = dataset.dataset
        super().__init__(dataset, indices)
        self.name = name
        self.classes, self.palette = tuple(dataset.classes), dataset.palette
        dataset_ids = dataset.ids
        self.ids = [dataset_ids[i] for i in indices]

    def locate(self, index: int) -> tuple[object, int]:
        index = _checked_index(index, len(self), self)
        return self.dataset, self.indices[index]

    def __repr__(self) -> str:
        return f"Subset({self.name}, {len(self)} samples)"


class Concat(_SegmentationView, torch.utils.data.ConcatDataset):
    """torch.utils.data.ConcatDataset of segmentation datasets with the same classes, palette and has_masks:
    item i belongs to dataset k = bisect(cumulative_sizes, i), at position i - cumulative_sizes[k - 1]."""

    def __init__(self, datasets: Sequence, name: str = "concat"):
        _check_compatible(list(datasets), "concat: cannot combine datasets")
        super().__init__(datasets)
        self.name = name
        self.classes, self.palette = tuple(datasets[0].classes), datasets[0].palette
        self.ids = [sample_id for dataset in self.datasets for sample_id in dataset.ids]

    def locate(self, index: int) -> tuple[object, int]:
        index = _checked_index(index, len(self), self)
        k = bisect.bisect_right(self.cumulative_sizes, index)
        return self.datasets[k], index - (self.cumulative_sizes[k - 1] if k else 0)

    def __getitem__(self, index: int):
        dataset, inner = self.locate(index)
        return dataset[inner]

    def __repr__(self) -> str:
        return f"Concat({self.name}, {len(self)} samples)"


def _checked_index(index, length: int, dataset) -> int:
    index = operator.index(index)
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for {dataset!r}")
    return index % length


def sources(dataset) -> list:
    """The datasets that hold the items of `dataset`: itself, or through Subset and Concat the datasets that
    read the files, distinct and in order of first appearance."""
    if isinstance(dataset, Subset):
        return sources(dataset.dataset)
    if isinstance(dataset, Concat):
        found = {}
        for part in dataset.datasets:
            for source in sources(part):
                found.setdefault(id(source), source)
        return list(found.values())
    return [dataset]


def _is_index_sequence(indices) -> bool:
    """True for a list, tuple, range or 1-d (or more) numpy array / torch tensor; False for a single int,
    a string, a set or a generator."""
    if isinstance(indices, (np.ndarray, torch.Tensor)):
        return indices.ndim > 0
    return isinstance(indices, (Sequence, range)) and not isinstance(indices, (str, bytes))


def subset(dataset, indices: Sequence[int] | slice | range) -> Subset:
    """The items `indices` of `dataset`, in that order: a sequence of ints (a list, a range, a 1-d numpy
    array or torch tensor of integers; negative counts from the end, repeats allowed) or a slice,
    e.g. subset(ds, slice(0, 100)), subset(ds, [3, 1, 4]) or subset(ds, np.array([0, 2])).
    A single int is refused (write subset(ds, [3])), and so are bools: for a boolean mask over the items
    pass np.flatnonzero(mask)."""
    length = len(dataset)
    if isinstance(indices, slice):
        chosen = list(range(length)[indices])
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
            if not -length <= index < length:
                raise IndexError(f"subset: index {index} out of range for {dataset!r} ({length} items)")
            chosen.append(index % length)
    return Subset(dataset, chosen, f"subset of {dataset!r}")


def filter_samples(dataset, predicate: Callable[[LazySample], bool]) -> Subset:
    """The items of `dataset` for which `predicate(dataset.sample(i))` is true, in their order.

    The predicate gets a LazySample: it reads `sample.mask`, `sample.image` or `sample.id`, and only what
    it reads is decoded (on a dataset without transforms). Runs once over the dataset, now.
    A contains_class predicate is first checked against the dataset's classes (see contains_class).
    """
    class_index = getattr(predicate, "class_index", None)  # set by contains_class
    if class_index is not None:
        _check_class_index(class_index, dataset)
    keep = [index for index in range(len(dataset)) if predicate(dataset.sample(index))]
    return Subset(dataset, keep, f"filter of {dataset!r}")


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


def concat(*datasets) -> Concat:
    """The items of each dataset one after the other (a torch ConcatDataset).

    All must have the same classes, the same palette and all or none masks (has_masks): a labelled split
    and one read with masks="none" are refused, since their samples would mix (image, mask) and
    (image, None). The errors name the datasets by position (0 = the first argument).
    """
    if not datasets:
        raise ValueError("concat needs at least one dataset")
    names = " + ".join(repr(dataset) for dataset in datasets)
    return Concat(list(datasets), f"concat of {names}")


def repeat(dataset, times: int) -> Subset:
    """`dataset` `times` times in a row: item i is item i % len(dataset).

    times: a positive int (numpy integers too; bools and floats are refused)."""
    times = _as_int(times, "repeat: times")
    if times < 1:
        raise ValueError(f"repeat: times must be a positive integer, got {times}")
    return Subset(dataset, list(range(len(dataset))) * times, f"{times} x {dataset!r}")


def random_split(dataset, lengths: Sequence[float], seed: int = 0) -> list[Subset]:
    """Split `dataset` into parts of random, disjoint items, exactly as torch.utils.data.random_split.

    lengths: fractions summing to 1 (part k gets floor(f_k * n) items, the rest go one by one to the first
        parts) or sizes summing to len(dataset): torch decides which.
    seed: torch.Generator().manual_seed(seed) draws the permutation (torch.randperm); part k takes its next
        lengths[k] positions. Same seed, same parts on every machine, and the same items as
        torch.utils.data.random_split(dataset, lengths, torch.Generator().manual_seed(seed)).
    """
    lengths = list(lengths)
    for position, value in enumerate(lengths):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"random_split: lengths[{position}] must be a number, got {value!r}")
    plain = [value.item() if isinstance(value, np.generic) else value for value in lengths]
    generator = torch.Generator().manual_seed(seed)
    try:
        parts = torch.utils.data.random_split(range(len(dataset)), plain, generator=generator)
    except ValueError as error:
        raise ValueError(
            f"random_split: lengths {plain} must be fractions in [0, 1] that sum to 1 or integer sizes that "
            f"sum to the {len(dataset)} samples ({error})"
        ) from None
    return [Subset(dataset, part.indices, f"part {k} of random_split(seed={seed}) of {dataset!r}")
            for k, part in enumerate(parts)]


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
        self.ids = list(source.ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_masks(self) -> bool:
        return getattr(self.source, "has_masks", True)

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
        return LazySample.from_item(self.ids[index], lambda: self[index])

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Mapped({name} of {self.source!r})"


def map_samples(dataset, fn: Callable) -> Mapped:
    """`fn` applied to each item: (image, mask) -> fn(image, mask). See Mapped."""
    return Mapped(dataset, fn)
