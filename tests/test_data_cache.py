"""segkit.data.CachedDataset: stored samples equal freshly decoded ones, a second run decodes nothing,
changes to the files or the stored chain rebuild the cache, damage is detected, randomness is never stored.

Every file a dataset decodes goes through PIL.Image.open; the `opened` fixture counts the calls.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from segkit.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CachedDataset,
    VOCSegmentation,
    contains_class,
    eval_transforms,
    filter_samples,
    make_shapes,
    map_samples,
    read_mask,
    subset,
    train_transforms,
    write_mask,
)
from segkit.data.cache import split_steps

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def shapes_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, seed=0, size=32, n_train=5, n_val=2, n_test=2)
    return root


@pytest.fixture
def root(shapes_master, tmp_path):
    """A private copy of the shapes set: tests touch and rewrite its files."""
    return shutil.copytree(shapes_master, tmp_path / "shapes")


@pytest.fixture
def cache_root(tmp_path):
    return tmp_path / "cache"



def read_all(dataset) -> list:
    return [dataset[i] for i in range(len(dataset))]


def assert_same_items(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for (image, mask), (ref_image, ref_mask) in zip(got, expected, strict=True):
        assert type(image) is type(ref_image) and image.dtype == ref_image.dtype
        torch.testing.assert_close(image, ref_image, rtol=0, atol=0)
        if ref_mask is None:
            assert mask is None
        else:
            assert type(mask) is type(ref_mask) and mask.dtype == ref_mask.dtype == torch.int64
            torch.testing.assert_close(mask, ref_mask, rtol=0, atol=0)


def test_stored_samples_equal_decoded_ones_and_a_second_run_decodes_nothing(root, cache_root, opened):
    raw = VOCSegmentation(root, "train")
    first = CachedDataset(raw, cache_root=cache_root, verbose=False)
    assert first.built and first.rebuild_reason is None and first.stored_steps == [] == first.live_steps
    assert len(opened) == 2 * len(raw)  # built: each image and mask decoded once
    assert first.folder.parent == cache_root / "datasets"
    assert first.folder.name.startswith("VOCSegmentation-train-")
    reference = read_all(raw)
    opened.clear()

    second = CachedDataset(VOCSegmentation(root, "train"), cache_root=cache_root, verbose=False)
    items = read_all(second)
    masks = [second.sample(i).mask for i in range(len(second))]
    assert not second.built and second.folder == first.folder
    assert opened == []  # the second run decodes nothing
    assert_same_items(items, reference)
    for index, mask in enumerate(masks):
        np.testing.assert_array_equal(mask.numpy(), read_mask(raw.mask_path(index)))
    assert second.ids == raw.ids and second.classes == raw.classes and second.palette is raw.palette
    assert second.image_path(1) == raw.image_path(1) and second.mask_path(1) == raw.mask_path(1)
    assert (second.folder / "mask.bin").stat().st_size == sum(m.numel() for _, m in reference)  # uint8


def test_deterministic_steps_are_stored_and_match_normalising_by_hand(root, cache_root):
    raw = VOCSegmentation(root, "val")
    cached = CachedDataset(raw, eval_transforms(), cache_root=cache_root, verbose=False)
    assert [type(s) for s in cached.stored_steps] == [v2.ToDtype, v2.Normalize] and cached.live_steps == []
    assert cached.fields["image"]["stored_dtype"] == "float32"
    assert cached.fields["mask"]["stored_dtype"] == "uint8"
    with_transforms = VOCSegmentation(root, "val", transforms=eval_transforms())
    assert_same_items(read_all(cached), read_all(with_transforms))
    raw_image, _ = VOCSegmentation(root, "val")[1]
    torch.testing.assert_close(cached[1][0].as_subclass(torch.Tensor), (raw_image / 255 - MEAN) / STD)


def test_random_augmentation_is_never_stored(root, cache_root):
    chain = train_transforms(crop_size=24, base_size=32)
    cached = CachedDataset(VOCSegmentation(root, "train"), chain, cache_root=cache_root, verbose=False)
    assert cached.stored_steps == [] and cached.live_steps == list(chain.transforms)  # ScaleJitter is first
    assert cached.fields["image"]["stored_dtype"] == "uint8"  # the decoded image, nothing more
    reference = VOCSegmentation(root, "train", transforms=chain)
    for seed in (0, 1):
        torch.manual_seed(seed)
        got = read_all(cached)
        torch.manual_seed(seed)
        assert_same_items(got, read_all(reference))
    torch.manual_seed(0)
    first = cached[0][0]
    torch.manual_seed(1)
    assert not torch.equal(first, cached[0][0])  # a new draw at every access


def test_a_chain_is_stored_up_to_its_first_random_step(root, cache_root):
    chain = v2.Compose([*eval_transforms().transforms, v2.RandomHorizontalFlip(p=1.0), v2.Resize(16)])
    stored, live = split_steps(chain)
    assert [type(s) for s in stored] == [v2.ToDtype, v2.Normalize]
    assert [type(s) for s in live] == [v2.RandomHorizontalFlip, v2.Resize]  # Resize after it stays live
    cached = CachedDataset(VOCSegmentation(root, "val"), chain, cache_root=cache_root, verbose=False)
    raw_image, raw_mask = VOCSegmentation(root, "val")[0]
    image, mask = cached[0]
    by_hand = v2.functional.resize(((raw_image / 255 - MEAN) / STD).flip(-1), [16], antialias=True)
    torch.testing.assert_close(image.as_subclass(torch.Tensor), by_hand)
    nearest = v2.InterpolationMode.NEAREST
    mask_by_hand = v2.functional.resize(raw_mask[None].flip(-1), [16], interpolation=nearest)[0]
    torch.testing.assert_close(mask.as_subclass(torch.Tensor), mask_by_hand, rtol=0, atol=0)


def test_a_change_in_the_stored_chain_gets_its_own_cache(root, cache_root):
    raw = VOCSegmentation(root, "val")
    imagenet = CachedDataset(raw, eval_transforms(), cache_root=cache_root, verbose=False)
    half = eval_transforms(mean=(0.5, 0.5, 0.5))
    other_mean = CachedDataset(raw, half, cache_root=cache_root, verbose=False)
    assert other_mean.built and other_mean.folder != imagenet.folder
    raw_image = raw[0][0].as_subclass(torch.Tensor)
    torch.testing.assert_close(other_mean[0][0].as_subclass(torch.Tensor), (raw_image / 255 - 0.5) / STD)
    # Only the live (random) part differs: the stored part is the same, so is the cache.
    crop_24 = CachedDataset(raw, train_transforms(crop_size=24), cache_root=cache_root, verbose=False)
    crop_16 = CachedDataset(raw, train_transforms(crop_size=16), cache_root=cache_root, verbose=False)
    assert crop_24.built and not crop_16.built and crop_16.folder == crop_24.folder


def test_touching_a_file_rebuilds(root, cache_root, opened):
    raw = VOCSegmentation(root, "train")
    CachedDataset(raw, cache_root=cache_root, verbose=False)
    stat = os.stat(raw.image_path(3))
    os.utime(raw.image_path(3), ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))  # touch, same bytes
    opened.clear()
    again = CachedDataset(raw, cache_root=cache_root, verbose=False)
    assert again.built and "1 sample file(s) changed" in again.rebuild_reason
    assert "train_0003" in again.rebuild_reason
    assert len(opened) == 2 * len(raw)
    assert not CachedDataset(raw, cache_root=cache_root, verbose=False).built  # and now it is current


def test_a_rewritten_mask_is_served_after_the_rebuild(root, cache_root, capsys):
    raw = VOCSegmentation(root, "train")
    CachedDataset(raw, cache_root=cache_root)
    new_mask = np.full((32, 32), 255, dtype=np.uint8)
    new_mask[4:20, 6:30] = 15
    write_mask(raw.mask_path(2), new_mask)
    again = CachedDataset(raw, cache_root=cache_root)
    assert again.built and "train_0002" in again.rebuild_reason
    assert "changed" in capsys.readouterr().err  # the reason is printed
    np.testing.assert_array_equal(again[2][1].numpy(), new_mask)
    np.testing.assert_array_equal(again[1][1].numpy(), read_mask(raw.mask_path(1)))


def flip_a_byte(folder):
    data = bytearray((folder / "image.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "image.bin").write_bytes(bytes(data))


def truncate(folder):
    data = (folder / "mask.bin").read_bytes()
    (folder / "mask.bin").write_bytes(data[:-10])


def drop_index(folder):
    (folder / "index.json").unlink()


def garble_index(folder):
    (folder / "index.json").write_text('{"key": {"identity": ')


def wrong_count(folder):
    index = json.loads((folder / "index.json").read_text())
    index["fields"]["mask"]["shapes"].pop()
    (folder / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(flip_a_byte, "corrupt"), (truncate, "truncated"), (drop_index, "interrupted"),
     (garble_index, "malformed"), (wrong_count, "4 shapes for 5 samples")],
)  # fmt: skip
def test_a_damaged_cache_is_detected_and_rebuilt(root, cache_root, damage, reason):
    raw = VOCSegmentation(root, "train")
    folder = CachedDataset(raw, cache_root=cache_root, verbose=False).folder
    damage(folder)
    again = CachedDataset(raw, cache_root=cache_root, verbose=False)
    assert again.built and reason in again.rebuild_reason
    assert_same_items(read_all(again), read_all(raw))
    leftovers = sorted(p.name for p in folder.parent.iterdir())  # no .old-* or .partial-* folder
    assert leftovers == [folder.name, folder.name + ".lock"]


def test_a_failed_build_leaves_nothing_behind(root, cache_root):
    raw = VOCSegmentation(root, "train")
    raw.image_path(3).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"VOC split 'train'.*cannot read image .*train_0003\.jpg"):
        CachedDataset(raw, cache_root=cache_root, verbose=False)
    assert [p.suffix for p in (cache_root / "datasets").iterdir()] == [".lock"]  # no folder, no partial


def test_datasets_that_cannot_be_cached_are_refused(root, cache_root):
    with pytest.raises(ValueError, match=r"without transforms.*CachedDataset\(dataset, transforms\)"):
        CachedDataset(VOCSegmentation(root, "train", transforms=eval_transforms()), cache_root=cache_root)
    with pytest.raises(ValueError, match="map_samples"):
        CachedDataset(map_samples(VOCSegmentation(root, "train"), eval_transforms()), cache_root=cache_root)


def test_subsets_splits_without_masks_and_filters_on_a_cache(root, cache_root, opened):
    raw = VOCSegmentation(root, "train")
    part = CachedDataset(subset(raw, [4, 0, 2]), cache_root=cache_root, verbose=False)
    assert part.ids == [raw.ids[i] for i in (4, 0, 2)]
    assert_same_items(read_all(part), [raw[i] for i in (4, 0, 2)])
    whole = CachedDataset(raw, cache_root=cache_root, verbose=False)
    assert whole.folder != part.folder
    opened.clear()
    kept = filter_samples(whole, contains_class(7))
    assert opened == []  # masks come from the cache
    assert kept.ids == [raw.ids[i] for i in range(len(raw)) if (read_mask(raw.mask_path(i)) == 7).any()]

    test = VOCSegmentation(root, "test", masks="optional")
    images = CachedDataset(test, eval_transforms(), cache_root=cache_root, verbose=False)
    assert images.has_masks is False and "mask" not in images.fields
    plain = VOCSegmentation(root, "test", eval_transforms(), "optional")
    assert_same_items(read_all(images), read_all(plain))


def test_cache_root_comes_from_segkit_cache(root, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGKIT_CACHE", str(tmp_path / "from_env"))
    cached = CachedDataset(VOCSegmentation(root, "val"), verbose=False)
    assert cached.folder.parent == tmp_path / "from_env" / "datasets"
    explicit = CachedDataset(VOCSegmentation(root, "val"), cache_root=tmp_path / "given", verbose=False)
    assert explicit.folder.parent == tmp_path / "given" / "datasets"


def test_worker_processes_build_and_read_the_same_arrays(root, cache_root):
    raw = VOCSegmentation(root, "train")
    serial = CachedDataset(raw, cache_root=cache_root / "a", verbose=False)
    parallel = CachedDataset(raw, cache_root=cache_root / "b", num_workers=2, verbose=False)
    for name in ("image.bin", "mask.bin"):
        assert (serial.folder / name).read_bytes() == (parallel.folder / name).read_bytes()
    serial[0]  # opens the memory maps in this process ...
    assert len(pickle.dumps(serial)) < 20_000  # ... which are not pickled (the workers reopen them)
    batches = list(DataLoader(serial, batch_size=5, num_workers=1))
    images, masks = batches[0]
    reference = read_all(raw)
    torch.testing.assert_close(images, torch.stack([i for i, _ in reference]).as_subclass(torch.Tensor))
    torch.testing.assert_close(masks, torch.stack([m for _, m in reference]).as_subclass(torch.Tensor))
