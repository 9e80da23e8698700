"""The synthetic shapes dataset: layout, determinism, content, and safe (re)generation."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from segkit.data import SHAPE_CLASSES, VOC_PALETTE, VOCSegmentation, make_shapes, shapes_is_complete

SMALL = dict(size=64, n_train=8, n_val=4, n_test=4)


def tree_sha256(root):
    """sha256 over every file under root: relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root, seed=0, **SMALL)
    return root


def test_voc_layout_and_a_test_split_without_masks(shapes_root):
    voc = shapes_root / "VOCdevkit" / "VOC2012"
    splits = {s: (voc / f"ImageSets/Segmentation/{s}.txt").read_text().split()
              for s in ("train", "val", "trainval", "test")}  # fmt: skip
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 4, 4]
    assert splits["trainval"] == splits["train"] + splits["val"]
    assert len(set(splits["train"] + splits["val"] + splits["test"])) == 16
    assert sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg")) == sorted(
        splits["train"] + splits["val"] + splits["test"]
    )
    assert sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png")) == sorted(splits["trainval"])
    # the test split's masks are nowhere: every PNG under the folder is a train or val mask
    assert sorted(p.stem for p in shapes_root.rglob("*.png")) == sorted(splits["trainval"])
    for path in (voc / "SegmentationClass").glob("*.png"):
        with Image.open(path) as mask:
            assert mask.mode == "P" and mask.size == (64, 64)
            assert mask.getpalette()[: 3 * 21] == [c for colour in VOC_PALETTE[:21] for c in colour]
    with Image.open(voc / "JPEGImages" / f"{splits['test'][0]}.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 64)
    marker = json.loads((shapes_root / "shapes.json").read_text())
    assert marker["parameters"]["seed"] == 0 and marker["parameters"]["n_test"] == 4


def test_hidden_test_set_has_the_images_of_the_seed_and_masks_apart(shapes_root, tmp_path):
    """make_hidden_test_set draws the test split of a seed: the same images as make_shapes with that seed
    (so a public seed would make public masks), the masks in a folder of their own."""
    from segkit.data.shapes import make_hidden_test_set

    ids = make_hidden_test_set(tmp_path / "pack", tmp_path / "masks", seed=0, size=64, n_test=4)
    voc = tmp_path / "pack" / "VOCdevkit" / "VOC2012"
    assert ids == (voc / "ImageSets/Segmentation/test.txt").read_text().split() == [
        f"test_{i:04d}" for i in range(4)]
    for image_id in ids:
        same = shapes_root / "VOCdevkit/VOC2012/JPEGImages" / f"{image_id}.jpg"
        assert (voc / "JPEGImages" / f"{image_id}.jpg").read_bytes() == same.read_bytes()
    assert sorted(p.name for p in (tmp_path / "pack").rglob("*.png")) == []  # no mask in the pack
    masks = [np.asarray(Image.open(tmp_path / "masks" / f"{i}.png")) for i in ids]
    assert all(m.shape == (64, 64) and set(np.unique(m)) <= {0, 255, *SHAPE_CLASSES} for m in masks)
    other = make_hidden_test_set(tmp_path / "pack2", tmp_path / "masks2", seed=12345678901234567, size=64,
                                 n_test=4)
    assert other == ids and (tmp_path / "masks2/test_0000.png").read_bytes() != (
        tmp_path / "masks/test_0000.png").read_bytes()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = make_shapes(tmp_path / "first", seed=3, **SMALL)
    second = make_shapes(tmp_path / "second", seed=3, **SMALL)
    other = make_shapes(tmp_path / "other", seed=4, **SMALL)
    assert tree_sha256(first) == tree_sha256(second)
    assert tree_sha256(first) != tree_sha256(other)
    # Each image has its own generator: more training images leave val and test unchanged.
    bigger = make_shapes(tmp_path / "bigger", seed=3, size=64, n_train=10, n_val=4, n_test=4)
    for name in ("JPEGImages/val_0003.jpg", "JPEGImages/test_0000.jpg", "SegmentationClass/train_0007.png"):
        before, after = first / "VOCdevkit/VOC2012" / name, bigger / "VOCdevkit/VOC2012" / name
        assert before.read_bytes() == after.read_bytes()


def all_masks(root):
    paths = sorted((root / "VOCdevkit" / "VOC2012" / "SegmentationClass").glob("*.png"))
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def test_all_background_scores_high_accuracy_but_low_miou(tmp_path):
    root = make_shapes(tmp_path / "default_size", seed=0, size=128, n_train=40, n_val=10, n_test=10)
    masks = all_masks(root)
    assert set(np.unique(masks).tolist()) == {0, 255, *SHAPE_CLASSES}  # only VOC indices of our shapes
    labelled = masks[masks != 255]
    # Constant prediction 0: accuracy = share of background; IoU(background) = the same share
    # (every pixel predicted 0, TP = background pixels); IoU of every other present class = 0.
    accuracy = np.mean(labelled == 0)
    present = np.unique(labelled)
    ious = [accuracy if c == 0 else 0.0 for c in present]
    assert accuracy > 0.6
    assert np.mean(ious) < 0.2
    counts = np.bincount(labelled, minlength=256)
    assert counts[0] > 5 * counts[list(SHAPE_CLASSES)].max()  # background by far the most frequent


def test_thin_void_band_separates_different_labels(shapes_root):
    masks = all_masks(shapes_root)
    assert 0.005 < np.mean(masks == 255) < 0.15  # a thin band, not whole regions
    for mask in masks:
        for dy, dx in [(0, 1), (1, 0), (1, 1), (1, -1)]:
            a = mask[max(dy, 0) :, max(dx, 0) : mask.shape[1] + min(dx, 0)]
            b = mask[: mask.shape[0] - dy, max(-dx, 0) : mask.shape[1] - max(dx, 0)]
            touching = (a != 255) & (b != 255)
            assert (a[touching] == b[touching]).all(), "two labels touch without void between them"


def test_content_varies_and_objects_overlap(tmp_path):
    root = make_shapes(tmp_path / "variety", seed=0, size=64, n_train=40, n_val=0, n_test=0)
    masks = all_masks(root)
    present = [set(np.unique(m).tolist()) - {0, 255} for m in masks]
    assert set().union(*present) == set(SHAPE_CLASSES)
    assert sum(len(p) >= 2 for p in present) >= 5  # several classes in one image
    areas = [np.sum(m == c) for m, p in zip(masks, present, strict=True) for c in p]
    assert max(areas) > 8 * min(areas)  # varied object scales
    # Backgrounds are textured: background pixels of one image are not a flat colour.
    image = np.asarray(Image.open(root / "VOCdevkit/VOC2012/JPEGImages/train_0000.jpg"), dtype=float)
    assert image[masks[0] == 0].std(axis=0).min() > 3


def test_if_missing_skips_a_complete_set_and_redoes_an_interrupted_one(tmp_path):
    root = tmp_path / "s"
    make_shapes(root, seed=1, **SMALL)
    assert shapes_is_complete(root, seed=1, **SMALL)
    assert not shapes_is_complete(root, seed=2, **SMALL)
    image = root / "VOCdevkit/VOC2012/JPEGImages/train_0000.jpg"
    image.write_bytes(b"sentinel")  # would be overwritten by a new generation
    make_shapes(root, seed=1, if_missing=True, **SMALL)
    assert image.read_bytes() == b"sentinel"
    # An interrupted run leaves the in-progress flag behind: not complete, so it is generated again.
    (root / ".shapes-incomplete").write_text("")
    assert not shapes_is_complete(root, seed=1, **SMALL)
    make_shapes(root, seed=1, if_missing=True, **SMALL)
    assert image.read_bytes() != b"sentinel" and shapes_is_complete(root, seed=1, **SMALL)
    assert not (root / ".shapes-incomplete").exists()
    # A missing image also makes it incomplete.
    image.unlink()
    assert not shapes_is_complete(root, seed=1, **SMALL)
    # Other parameters replace the set, leaving no stale files of the old one.
    make_shapes(root, seed=1, size=64, n_train=2, n_val=1, n_test=1, if_missing=True)
    assert len(list((root / "VOCdevkit/VOC2012/JPEGImages").iterdir())) == 4
    assert len(VOCSegmentation(root, split="train")) == 2


def test_never_overwrites_a_foreign_vocdevkit(tmp_path):
    (tmp_path / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not generated by segkit"):
        make_shapes(tmp_path, **SMALL)
    assert (tmp_path / "VOCdevkit" / "VOC2012").is_dir()


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_shapes(tmp_path, size=8)
    with pytest.raises(ValueError, match="split sizes"):
        make_shapes(tmp_path, n_train=-1)
