"""segkit.data.ops: datasets made from datasets, checked item by item against the source dataset,
by-hand computations and torch.utils.data.random_split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segkit.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC_PALETTE,
    FolderDataset,
    VOCSegmentation,
    concat,
    contains_class,
    dataset_stats,
    eval_transforms,
    filter_samples,
    make_shapes,
    map_samples,
    random_split,
    read_mask,
    repeat,
    subset,
    write_mask,
)
from segkit.data.ops import Concat, Subset, sources


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, seed=0, size=32, n_train=10, n_val=4, n_test=3)
    return root


@pytest.fixture(scope="module")
def train(shapes_root):
    return VOCSegmentation(shapes_root, "train")


def assert_same_item(got, expected):
    image, mask = got
    torch.testing.assert_close(image, expected[0], rtol=0, atol=0)
    if expected[1] is None:
        assert mask is None
    else:
        torch.testing.assert_close(mask, expected[1], rtol=0, atol=0)


def assert_keeps_source_attributes(derived, source):
    assert derived.classes == source.classes and derived.num_classes == source.num_classes == 21
    assert derived.palette is VOC_PALETTE


@pytest.mark.parametrize(
    "indices", [[3, 1, 4], slice(2, 8, 2), slice(None, None, -1), range(5), [-1, 0, 0]], ids=repr
)
def test_subset_is_the_chosen_items_in_order(train, indices):
    part = subset(train, indices)
    expected = list(range(len(train)))[indices] if isinstance(indices, slice) else list(indices)
    expected = [i % len(train) for i in expected]
    assert len(part) == len(expected)
    assert part.ids == [train.ids[i] for i in expected]
    for position, index in enumerate(expected):
        assert_same_item(part[position], train[index])
        assert part.image_path(position) == train.image_path(index)
        assert part.mask_path(position) == train.mask_path(index)
    assert_keeps_source_attributes(part, train)


def test_subset_of_subset_points_at_the_original(train):
    inner = subset(train, [5, 6, 7, 8])
    outer = subset(inner, [3, 0])
    assert sources(outer) == [train] and outer.dataset is train and outer.indices == [8, 5]
    assert outer.ids == [train.ids[8], train.ids[5]]
    assert_same_item(outer[0], train[8])


def test_subset_index_errors_name_the_index(train):
    with pytest.raises(IndexError, match=r"index 10 out of range.*10 items"):
        subset(train, [0, 10])
    part = subset(train, [1, 2])
    with pytest.raises(IndexError, match="index out of range"):
        part[2]


@pytest.mark.parametrize("class_index", [1, 7, 15])
def test_filter_contains_class_matches_a_scan_of_the_mask_files(train, class_index):
    kept = filter_samples(train, contains_class(class_index))
    by_hand = [
        train.ids[i] for i in range(len(train)) if np.any(read_mask(train.mask_path(i)) == class_index)
    ]
    assert kept.ids == by_hand and 0 < len(by_hand) < len(train)
    assert_keeps_source_attributes(kept, train)
    # dataset_stats reads the same files through image_path/mask_path: every kept image has the class.
    assert dataset_stats(kept).image_counts[class_index] == len(kept)


def test_filter_on_ids_and_on_a_subset(train):
    even = filter_samples(train, lambda sample: int(sample.id[-1]) % 2 == 0)
    assert even.ids == [i for i in train.ids if int(i[-1]) % 2 == 0]
    inside = filter_samples(subset(train, [9, 8, 7]), lambda sample: sample.id != train.ids[8])
    assert inside.ids == [train.ids[9], train.ids[7]]
    assert_same_item(inside[1], train[7])


def test_contains_class_needs_masks(shapes_root):
    test = VOCSegmentation(shapes_root, "test", masks="optional")
    with pytest.raises(ValueError, match=r"contains_class\(7\).*'test_0000' has no mask"):
        filter_samples(test, contains_class(7))


def test_map_equals_the_dataset_transforms_and_normalises_by_hand(shapes_root, train):
    mapped = map_samples(train, eval_transforms())
    with_transforms = VOCSegmentation(shapes_root, "train", transforms=eval_transforms())
    assert len(mapped) == len(train) and mapped.ids == train.ids
    assert_keeps_source_attributes(mapped, train)
    for index in range(len(train)):
        assert_same_item(mapped[index], with_transforms[index])
    raw_image, raw_mask = train[3]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    image, mask = mapped[3]
    torch.testing.assert_close(image.as_subclass(torch.Tensor), (raw_image.float() / 255 - mean) / std)
    torch.testing.assert_close(mask, raw_mask, rtol=0, atol=0)
    torch.testing.assert_close(mapped.image(3), image, rtol=0, atol=0)
    assert not hasattr(mapped, "image_path")  # its items are not the files' content any more


def test_map_with_a_label_function(train):
    merged = map_samples(train, lambda image, mask: (image, torch.where(mask == 255, 0, mask)))
    for index in range(3):
        _, mask = merged[index]
        expected = read_mask(train.mask_path(index)).astype(np.int64)
        expected[expected == 255] = 0
        np.testing.assert_array_equal(mask.numpy(), expected)
    # filter sees the mapped masks: no void pixel is left after the mapping
    assert len(filter_samples(merged, contains_class(255))) == 0
    assert len(filter_samples(train, contains_class(255))) == len(train)


def test_concat_and_repeat(shapes_root, train):
    val = VOCSegmentation(shapes_root, "val")
    both = concat(train, val)
    assert len(both) == len(train) + len(val)
    assert both.ids == train.ids + val.ids
    assert_same_item(both[len(train) + 1], val[1])
    assert both.mask_path(len(train)) == val.mask_path(0)
    assert_keeps_source_attributes(both, train)

    tripled = repeat(val, 3)
    assert len(tripled) == 3 * len(val) and tripled.ids == val.ids * 3
    for index in range(len(tripled)):
        assert_same_item(tripled[index], val[index % len(val)])
    with pytest.raises(ValueError, match="positive integer"):
        repeat(val, 0)


def test_concat_refuses_different_classes(tmp_path, train):
    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image, mask = train[0]
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "images" / "a.png")
    write_mask(folder / "masks" / "a.png", mask)
    two_classes = FolderDataset(folder, classes=("background", "thing"))
    with pytest.raises(ValueError, match="different classes.*'thing'"):
        concat(train, two_classes)
    assert concat(FolderDataset(folder), train).ids[0] == "a"


@pytest.mark.parametrize("lengths", [[7, 3], [0.5, 0.3, 0.2], [0.34, 0.33, 0.33], [10]])
def test_random_split_draws_the_same_parts_as_torch(train, lengths):
    parts = random_split(train, lengths, seed=3)
    reference = torch.utils.data.random_split(
        range(len(train)), lengths, generator=torch.Generator().manual_seed(3)
    )
    assert [len(p) for p in parts] == [len(r) for r in reference]
    for part, ref in zip(parts, reference, strict=True):
        assert part.ids == [train.ids[i] for i in ref.indices]
        assert_keeps_source_attributes(part, train)
    all_ids = [i for part in parts for i in part.ids]
    assert sorted(all_ids) == sorted(train.ids)  # disjoint and complete


def test_random_split_depends_on_the_seed_only(train):
    first = [p.ids for p in random_split(train, [5, 5], seed=0)]
    assert first == [p.ids for p in random_split(train, [5, 5], seed=0)]
    assert first != [p.ids for p in random_split(train, [5, 5], seed=1)]


def test_random_split_sizes_by_hand(train):
    """10 items: fractions give the floors, and the items left over go one by one to the first parts."""
    sizes = lambda lengths: [len(part) for part in random_split(train, lengths)]  # noqa: E731
    assert sizes([0.25, 0.25, 0.5]) == [3, 2, 5]  # floors 2, 2, 5; the 1 left goes to the first
    assert sizes([0.3, 0.3, 0.4]) == [3, 3, 4]  # floors 3, 3, 4: nothing left
    with pytest.raises(ValueError, match="sum to the 10 samples"):
        random_split(train, [5, 4])
    with pytest.raises(ValueError, match="fractions in .0, 1. that sum to 1"):
        random_split(train, [0.5, 0.4])


def test_a_reader_with_masks_none_has_no_masks(shapes_root):
    val = VOCSegmentation(shapes_root, "val", transforms=eval_transforms())
    images = VOCSegmentation(shapes_root, "val", transforms=eval_transforms(), masks="none")
    assert len(images) == len(val) and images.ids == val.ids and images.has_masks is False
    assert images.image_path(2) == val.image_path(2) and images.mask_path(2) is None
    image, mask = images[2]
    assert mask is None
    torch.testing.assert_close(image, val[2][0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="has no masks"):
        dataset_stats(images)


def test_subset_and_concat_are_torch_datasets_with_torchs_items(shapes_root, train):
    """Subset and Concat are torch's classes: their items equal those of torch's own Subset and
    ConcatDataset built on the same datasets, and a subset of a concat reaches through both."""
    val = VOCSegmentation(shapes_root, "val")
    part = subset(train, [7, 2])
    both = concat(part, val)
    assert isinstance(part, torch.utils.data.Subset) and isinstance(both, torch.utils.data.ConcatDataset)
    assert isinstance(part, Subset) and isinstance(both, Concat)
    reference = torch.utils.data.ConcatDataset([torch.utils.data.Subset(train, [7, 2]), val])
    assert len(both) == len(reference) == 2 + len(val)
    for index in range(len(both)):
        assert_same_item(both[index], reference[index])
    inside = subset(both, [1, 2, -1])
    assert inside.ids == [train.ids[2], val.ids[0], val.ids[-1]]
    assert inside.mask_path(1) == val.mask_path(0) and sources(inside) == [train, val]


class CountingIds:
    """A dataset whose `ids` property counts how often it is read (as a list rebuilt on access would be)."""

    def __init__(self, dataset):
        self.dataset, self.reads = dataset, 0
        self.classes, self.palette = dataset.classes, dataset.palette

    @property
    def ids(self):
        self.reads += 1
        return list(self.dataset.ids)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


def test_ids_are_made_once_so_reading_one_costs_o1(train):
    """Derived datasets make their id list when they are made; reading ids[i] for every i afterwards
    never goes back to the source (a list rebuilt on every access made a pass over a subset quadratic)."""
    counting = CountingIds(train)
    part = subset(counting, list(range(len(train))) * 50)
    reads = counting.reads
    assert reads == 1
    for index in range(len(part)):
        assert part.ids[index] == train.ids[index % len(train)]
    assert counting.reads == reads
    assert part.ids is part.ids
    mapped = map_samples(part, eval_transforms())
    assert mapped.ids is mapped.ids and counting.reads == reads


def test_a_dataloader_batches_a_derived_dataset(train):
    derived = map_samples(subset(train, [4, 2, 9]), eval_transforms())
    images, masks = next(iter(DataLoader(derived, batch_size=3)))
    for position, index in enumerate([4, 2, 9]):
        expected_image, expected_mask = eval_transforms()(*train[index])
        torch.testing.assert_close(images[position], expected_image.as_subclass(torch.Tensor))
        torch.testing.assert_close(masks[position], expected_mask.as_subclass(torch.Tensor))


# ----------------------------------------------------------------------------- bad arguments, numpy ints


def test_subset_refuses_a_single_int_and_bools_but_takes_numpy_integers(train):
    with pytest.raises(TypeError, match=r"sequence of ints, a range or a slice, got 3 .*subset\(ds, \[3\]\)"):
        subset(train, 3)
    with pytest.raises(TypeError, match=r"indices\[0\] must be an integer, got the bool True"):
        subset(train, [True])
    with pytest.raises(TypeError, match=r"indices\[0\] must be an integer, got the bool"):
        subset(train, np.array([False, True]))  # a boolean mask: np.flatnonzero(mask) is meant
    with pytest.raises(TypeError, match=r"indices\[0\] must be an integer, got 1.0"):
        subset(train, [1.0])
    for indices in (np.array([0, 2]), [np.int64(0), np.int32(2)], torch.tensor([0, 2])):
        part = subset(train, indices)
        assert part.ids == [train.ids[0], train.ids[2]]
        assert_same_item(part[1], train[2])
    assert subset(train, np.flatnonzero(np.arange(10) % 4 == 0)).ids == [train.ids[i] for i in (0, 4, 8)]


def test_repeat_refuses_bools_and_floats_but_takes_numpy_integers(train):
    with pytest.raises(TypeError, match="times must be an integer, got the bool True"):
        repeat(train, True)
    with pytest.raises(TypeError, match=r"times must be an integer, got 2.0"):
        repeat(train, 2.0)
    twice = repeat(train, np.int64(2))
    assert len(twice) == 2 * len(train) and twice.ids == train.ids * 2


@pytest.mark.parametrize(
    "lengths",
    [np.array([6, 4]), [np.int64(7), 3], np.array([0.5, 0.5]), [np.float64(0.8), 0.2], [1], [0, 1]],
    ids=repr,
)
@pytest.mark.filterwarnings("ignore:Length of split at index 0 is 0")  # torch's warning for [0, 1]
def test_random_split_reads_numpy_numbers_and_int_fractions_as_torch_does(train, lengths):
    """numpy ints are sizes, numpy floats fractions; [1] and [0, 1] sum to 1: fractions for torch too."""
    parts = random_split(train, lengths, seed=5)
    reference = torch.utils.data.random_split(
        range(len(train)), list(lengths), generator=torch.Generator().manual_seed(5)
    )
    assert [len(p) for p in parts] == [len(r) for r in reference]
    for part, ref in zip(parts, reference, strict=True):
        assert part.ids == [train.ids[i] for i in ref.indices]


def test_random_split_errors_show_plain_numbers(train):
    with pytest.raises(ValueError, match=r"lengths \[6, 6\] must be fractions .* or integer sizes that "
                                         r"sum to the 10 samples"):
        random_split(train, np.array([6, 6]))
    with pytest.raises(ValueError, match=r"lengths \[0.5, 0.4\] must be fractions"):
        random_split(train, np.array([0.5, 0.4]))
    with pytest.raises(ValueError, match=r"lengths \[1.5, -0.5\] must be fractions"):
        random_split(train, [1.5, -0.5])
    with pytest.raises(TypeError, match=r"lengths\[0\] must be a number, got True"):
        random_split(train, [True, 9])


@pytest.mark.parametrize("class_index", [21, 254, 999, np.int64(30)])
def test_contains_class_outside_the_classes_is_an_error(train, class_index):
    expected = rf"class index {int(class_index)} is not a class of .*has 21 classes"
    with pytest.raises(ValueError, match=expected):
        filter_samples(train, contains_class(class_index))


def test_contains_class_bad_arguments_and_the_last_class(train):
    with pytest.raises(ValueError, match="class_index must be >= 0, got -1"):
        contains_class(-1)
    with pytest.raises(TypeError, match="class_index must be an integer, got the bool True"):
        contains_class(True)
    # the highest valid index and numpy integers work; a by-hand scan of the mask files is the reference
    for class_index in (20, np.int64(7)):
        by_hand = [train.ids[i] for i in range(len(train))
                   if np.any(read_mask(train.mask_path(i)) == class_index)]  # fmt: skip
        assert filter_samples(train, contains_class(class_index)).ids == by_hand


def test_contains_class_is_checked_against_the_dataset_classes(tmp_path, train):
    """A dataset with 4 classes: 3 is the last class, 4 is not one (though it is one of VOC's)."""
    four = one_image_folder(tmp_path, train, classes=("background", "a", "b", "c"))
    filter_samples(four, contains_class(3))
    with pytest.raises(ValueError, match=r"contains_class\(4\).*has 4 classes \(0 to 3\), or 255 = void"):
        filter_samples(four, contains_class(4))


def one_image_folder(tmp_path, train, classes=None, name="mine"):
    """A FolderDataset (images/ + masks/) holding train[0] as 'a.png'."""
    from PIL import Image

    folder = tmp_path / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    image, mask = train[0]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / "images" / "a.png")
    write_mask(folder / "masks" / "a.png", mask)
    return FolderDataset(folder) if classes is None else FolderDataset(folder, classes=classes)


def test_concat_refuses_different_palettes_and_names_the_positions(tmp_path, shapes_root, train):
    val = VOCSegmentation(shapes_root, "val")
    other = one_image_folder(tmp_path, train)
    other.palette = [(0, 0, 0)] + [(255, 255, 255)] * 255  # its own colours: class 1 is white
    expected = (r"different palettes: dataset 0 VOCSeg.*and dataset 2 FolderDataset.*"
                r"class 1 is \(128, 0, 0\) in one, \(255, 255, 255\) in the other")
    with pytest.raises(ValueError, match=expected):
        concat(train, val, other)
    other.palette = [tuple(colour) for colour in VOC_PALETTE]  # the same colours in another list: accepted
    assert concat(train, other).palette is VOC_PALETTE


def test_concat_refuses_labelled_with_unlabelled(shapes_root, train):
    test = VOCSegmentation(shapes_root, "test", masks="optional")
    expected = (r"with and without masks: dataset 0 .*'train'.* and dataset 1 .*'test'.*"
                r"read dataset 0 with masks='none'")
    with pytest.raises(ValueError, match=expected):
        concat(train, test)
    with pytest.raises(ValueError, match=r"dataset 1 has masks, dataset 0 has none"):
        concat(test, subset(train, [0]))
    images = concat(VOCSegmentation(shapes_root, "train", masks="none"), test)  # the hint works
    assert images.has_masks is False and len(images) == len(train) + len(test)
    assert all(images[i][1] is None for i in range(len(images)))
    assert_same_item(images[len(train)], test[0])
