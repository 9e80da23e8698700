"""Competition set-up (competition/setup.py, segkit.competition.truth and .rules), and the small builders that
the other test_competition_* files share: a tiny dataset with held-back test labels, a competition made from
it, PNG bytes and zips made in memory."""

from __future__ import annotations

import json
import math
import random
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segkit.cli import main as segkit_main
from segkit.competition.board import Board
from segkit.competition.rules import RulesError, load_rules
from segkit.competition.truth import TestSet, TruthError, split_ids
from segkit.data import VOC_CLASSES, VOC_PALETTE, make_shapes, read_mask, write_mask

REPO = Path(__file__).resolve().parent.parent
NUM_CLASSES = 21
# Six test images of different sizes (height, width), so a mask of the wrong image's size is caught.
SIZES = {"img_a": (12, 16), "img_b": (10, 14), "img_c": (12, 16), "img_d": (8, 9), "img_e": (11, 13),
         "img_f": (9, 12)}
CLASSES_USED = (0, 1, 3, 7, 15)


def competition(command: str, *argv) -> int:
    """`segkit competition COMMAND ARGV...`, as the instructor types it; returns the exit status."""
    return segkit_main(["competition", command, *map(str, argv)])


def random_truth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A truth mask: a few VOC classes, background most frequent, ~10 % void (255)."""
    mask = rng.choice(CLASSES_USED, size=(height, width), p=[0.5, 0.15, 0.15, 0.1, 0.1]).astype(np.uint8)
    mask[rng.random((height, width)) < 0.1] = 255
    return mask


def make_dataset(root: Path, sizes: dict = SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    """The part of a VOC-layout dataset that the set-up reads: test.txt, JPEGImages/<id>.jpg (noise) and the
    held-back test-labels/<id>.png."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("".join(f"{i}\n" for i in sizes))
    (root / "test-labels").mkdir()
    masks = {}
    for image_id, (height, width) in sizes.items():
        masks[image_id] = random_truth(rng, height, width)
        write_mask(root / "test-labels" / f"{image_id}.png", masks[image_id])
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg")
    return masks


@dataclass
class Competition:
    root: Path
    truth: Path
    board: Path
    masks: dict[str, np.ndarray]  # the hidden truth, for independent checks
    public: list[str]
    private: list[str]

    def submit(self, path, team, now=None):
        from segkit.competition.scoring import submit

        return submit(path, team, self.truth, self.board, now=now)


def make_competition(tmp_path: Path, seed: int = 7, **options) -> Competition:
    from segkit.competition.prepare import prepare_competition

    masks = make_dataset(tmp_path / "dataset")
    prepare_competition(tmp_path / "dataset", tmp_path / "comp", seed=seed, **options)
    split = json.loads((tmp_path / "comp" / "truth" / "test_set.json").read_text())
    root = tmp_path / "comp"
    return Competition(root=root, truth=root / "truth", board=root / "board", masks=masks,
                       public=split["public"], private=split["private"])


def png_bytes(array: np.ndarray, mode: str = "P") -> bytes:
    """Encode an array as PNG in memory: mode "P" gets the VOC palette, "L" is greyscale, else as given."""
    image = Image.fromarray(array)
    if mode == "P":
        image.putpalette([c for colour in VOC_PALETTE for c in colour])
    elif image.mode != mode:
        image = image.convert(mode)
    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """members: iterable of (name or ZipInfo, bytes), written in that order (duplicates allowed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which some tests want
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return path


def noisy(truth: np.ndarray, rng: np.random.Generator, flip: float = 0.3) -> np.ndarray:
    """A prediction: the truth with void filled in and a share of pixels set to a random used class."""
    prediction = truth.copy()
    changed = (prediction == 255) | (rng.random(truth.shape) < flip)
    prediction[changed] = rng.choice(CLASSES_USED, size=int(changed.sum()))
    return prediction


def prediction_zip(path: Path, predictions: dict[str, np.ndarray], mode: str = "P") -> Path:
    return write_zip(path, [(f"{i}.png", png_bytes(m, mode)) for i, m in predictions.items()])


# ---- tests of the set-up ----------------------------------------------------------------------------------


def test_setup_script_writes_truth_split_board_and_a_valid_sample(tmp_path, capsys):
    masks = make_dataset(tmp_path / "data")
    code = competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "comp"),
                                      "--seed", "11", "--public-fraction", "0.5", "--daily-limit", "3",
                                      "--ladder-margin", "0.02")
    assert code == 0
    printed = capsys.readouterr().out
    assert "seed (keep private): 11" in printed

    comp = tmp_path / "comp"
    test_set = TestSet.load(comp / "truth")
    assert test_set.sizes == SIZES
    for image_id, mask in masks.items():  # the truth is copied exactly, void included, PNG and decoded
        np.testing.assert_array_equal(read_mask(test_set.mask_path(image_id)), mask)
        np.testing.assert_array_equal(test_set.read(image_id), mask)
    # the split is the documented one: sorted ids shuffled by random.Random(seed), the first half public
    order = sorted(SIZES)
    random.Random(11).shuffle(order)
    assert test_set.public == set(order[:3]) and test_set.private == set(order[3:])

    rules = load_rules(comp / "board")
    assert (rules.num_classes, rules.class_names, rules.daily_limit) == (21, VOC_CLASSES, 3)
    assert (rules.ladder_margin, rules.final_count) == (0.02, 2)
    assert rules.max_members == len(SIZES)
    assert Board(comp / "board").submissions() == []

    with zipfile.ZipFile(comp / "sample_submission.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"{i}.png" for i in SIZES)
        for image_id, (height, width) in SIZES.items():
            image = Image.open(BytesIO(archive.read(f"{image_id}.png")))
            assert image.mode == "P" and image.size == (width, height)
            assert not np.asarray(image).any()  # all background


def test_split_is_deterministic_in_the_seed_and_partitions_the_ids():
    ids = [f"id{i:03d}" for i in range(40)]
    public, private = split_ids(ids, seed=5, public_fraction=0.3)
    assert (public, private) == split_ids(list(reversed(ids)), seed=5, public_fraction=0.3)  # order-free
    assert len(public) == 12 and set(public) | set(private) == set(ids) and not set(public) & set(private)
    assert split_ids(ids, seed=6, public_fraction=0.3)[0] != public
    with pytest.raises(ValueError, match="public_fraction"):
        split_ids(ids, seed=5, public_fraction=1.0)


def test_setup_on_the_shapes_dataset_gives_an_accepted_sample(tmp_path):
    seed = 3141592653589793238
    assert competition("setup", "--data", "shapes", "--out", str(tmp_path / "comp"), "--seed", str(seed),
                       "--size", "32", "--n-test", "4") == 0
    from segkit.competition.scoring import submit

    row, result = submit(tmp_path / "comp" / "sample_submission.zip", "baseline", tmp_path / "comp" / "truth",
                         tmp_path / "comp" / "board")
    assert row.accepted, row.message
    # the truth is the test split that make_shapes draws with the same seed: the masks of
    # make_hidden_test_set, drawn again here into a folder of the test's own
    from segkit.data.shapes import make_hidden_test_set

    make_hidden_test_set(tmp_path / "again", tmp_path / "masks", seed, size=32, n_test=4)
    test_set = TestSet.load(tmp_path / "comp" / "truth")
    for image_id in test_set.sizes:
        drawn = read_mask(tmp_path / "masks" / f"{image_id}.png")
        np.testing.assert_array_equal(test_set.read(image_id), drawn)
    # all-background: background IoU = background pixels / non-void pixels of the public split
    truth = np.concatenate([test_set.read(i).ravel() for i in sorted(test_set.public)])
    labelled = truth[truth != 255]
    assert result.public["iou"][0] == pytest.approx(np.mean(labelled == 0))
    assert result.public["pixel_accuracy"] == pytest.approx(np.mean(labelled == 0))


def test_student_pack_holds_the_test_images_and_no_mask(tmp_path):
    assert competition("setup", "--data", "shapes", "--out", str(tmp_path / "comp"), "--size", "32",
                       "--n-test", "5") == 0
    pack = tmp_path / "comp" / "student-pack"
    voc = pack / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets" / "Segmentation" / "test.txt").read_text().split()
    assert ids == [f"test_{i:04d}" for i in range(5)]
    assert sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg")) == ids
    files = sorted(str(p.relative_to(pack)) for p in pack.rglob("*") if p.is_file())
    assert files == sorted(["README.txt", "sample_submission.zip",
                            "VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt",
                            *[f"VOCdevkit/VOC2012/JPEGImages/{i}.jpg" for i in ids]])
    with zipfile.ZipFile(tmp_path / "comp" / "student-pack.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"student-pack/{name}" for name in files)
    # the drawn seed is a secret one, and the pack's images are those of that seed, not of seed 0
    seed = json.loads((tmp_path / "comp" / "truth" / "test_set.json").read_text())["seed"]
    assert seed >= 10**15
    local = make_shapes(tmp_path / "local", size=32, n_train=1, n_val=1, n_test=5)  # a student's data/shapes
    local_image = local / "VOCdevkit/VOC2012/JPEGImages/test_0000.jpg"
    assert local_image.read_bytes() != (voc / "JPEGImages/test_0000.jpg").read_bytes()


def test_a_students_local_shapes_labels_score_no_better_than_a_constant(tmp_path):
    """The attack of the old set-up: zip the test labels of one's own `segkit data shapes` (seed 0, which
    every notebook uses: anyone can draw them, as make_hidden_test_set does here) and submit them.  Against a
    test set drawn from a secret seed they are masks of other images: they score what all-background (the
    best constant) scores, up to the noise of a prediction that knows nothing (within 0.02 mIoU over 8
    secret seeds tried: from -0.013 to +0.006), and no object class gets an IoU a model would be proud of."""
    from segkit.competition.scoring import submit
    from segkit.data.shapes import make_hidden_test_set

    assert competition("setup", "--data", "shapes", "--out", str(tmp_path / "comp"), "--n-test", "40",
                       "--size", "64", "--daily-limit", "9", "--seed", "2718281828459045235") == 0
    make_hidden_test_set(tmp_path / "local", tmp_path / "local-labels", seed=0, size=64, n_test=40)
    labels = {p.stem: np.where(read_mask(p) == 255, 0, read_mask(p)).astype(np.uint8)
              for p in (tmp_path / "local-labels").glob("*.png")}
    stolen = prediction_zip(tmp_path / "stolen.zip", labels)
    comp = tmp_path / "comp"
    results = {}
    for name, path in [("stolen", stolen), ("constant", comp / "sample_submission.zip")]:
        row, result = submit(path, "mallory", comp / "truth", comp / "board")
        assert row.accepted, row.message
        results[name] = result
    for part in ("public", "private"):
        stolen_part, constant_part = getattr(results["stolen"], part), getattr(results["constant"], part)
        assert stolen_part["miou"] <= constant_part["miou"] + 0.02, (part, stolen_part, constant_part)
        objects = [iou for iou in stolen_part["iou"][1:] if not math.isnan(iou)]
        assert max(objects) < 0.15, (part, objects)
    # the same zip against the masks it was drawn from scores 1.0: what the old set-up let a student do
    truth = tmp_path / "seed0"
    (truth / "masks").mkdir(parents=True)
    from segkit.competition.prepare import write_truth

    sizes = write_truth(truth, {p.stem: p for p in (tmp_path / "local-labels").glob("*.png")}, 21)
    split = {"public": sorted(sizes)[:20], "private": sorted(sizes)[20:],
             "sizes": {k: list(v) for k, v in sizes.items()}}
    (truth / "test_set.json").write_text(json.dumps(split))
    from segkit.competition.rules import load_rules
    from segkit.competition.scoring import score_submission

    assert score_submission(stolen, TestSet.load(truth), load_rules(comp / "board")).public["miou"] == 1.0


def test_setup_refuses_test_labels_students_can_regenerate(tmp_path, capsys):
    for seed, phrase in [("0", "seed 0 is the default of `segkit data shapes`"),
                         ("20260501", "seed 20260501 is too small to stay secret")]:
        out = tmp_path / f"c{seed}"
        assert competition("setup", "--data", "shapes", "--out", str(out), "--seed", seed) == 2
        assert phrase in capsys.readouterr().err
        assert not (tmp_path / f"c{seed}" / "truth").exists()
    # a generated shapes set given as a folder: refused whatever test labels someone put next to it
    local = make_shapes(tmp_path / "shapes", size=32, n_train=1, n_val=1, n_test=2)
    (local / "test-labels").mkdir()
    assert competition("setup", "--data", str(local), "--out", str(tmp_path / "c1")) == 2
    assert "is a generated shapes set (seed 0 in its shapes.json)" in capsys.readouterr().err
    # a folder whose test ids are still in a labelled split, or whose test masks students have
    make_dataset(tmp_path / "data")
    lists = tmp_path / "data" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "val.txt").write_text("img_c\nother\n")
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c2")) == 2
    assert "val.txt lists 1 test id(s), e.g. 'img_c'" in capsys.readouterr().err
    (lists / "val.txt").write_text("other\n")
    labelled = tmp_path / "data" / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    labelled.mkdir()
    write_mask(labelled / "img_b.png", np.zeros((10, 14), np.uint8))
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c3")) == 2
    assert "the mask of test image 'img_b' is among the labelled masks" in capsys.readouterr().err
    (labelled / "img_b.png").unlink()
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c4")) == 0


def test_setup_errors_name_the_problem(tmp_path, capsys):
    assert competition("setup", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c1")) == 2
    assert "test.txt not found" in capsys.readouterr().err

    make_dataset(tmp_path / "data")
    bad = np.zeros((12, 16), np.uint8)
    bad[0, 0] = 30  # neither a class nor void
    write_mask(tmp_path / "data" / "test-labels" / "img_a.png", bad)
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c2")) == 2
    assert "img_a.png: values [30]" in capsys.readouterr().err

    write_mask(tmp_path / "data" / "test-labels" / "img_a.png", np.zeros((12, 16), np.uint8))
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c3")) == 0
    assert competition("setup", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c3")) == 2
    assert "already holds a competition" in capsys.readouterr().err


def test_rules_file_errors_name_the_key(tmp_path):
    comp = make_competition(tmp_path)
    path = comp.board / "competition.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps({**values, "daily_limt": 3}))
    with pytest.raises(RulesError, match="unknown key.*daily_limt"):
        load_rules(comp.board)
    path.write_text(json.dumps({**values, "daily_limit": 0}))
    with pytest.raises(RulesError, match="daily_limit must be a positive integer, got 0"):
        load_rules(comp.board)
    path.write_text(json.dumps({**values, "ladder_margin": -1}))
    with pytest.raises(RulesError, match="ladder_margin"):
        load_rules(comp.board)


def test_truth_folder_errors(tmp_path):
    with pytest.raises(TruthError, match="test_set.json not found"):
        TestSet.load(tmp_path)
    comp = make_competition(tmp_path)
    np.save(comp.truth / "masks.npy", np.zeros(10, np.uint8))
    with pytest.raises(TruthError, match="masks.npy holds uint8 \\(10,\\), but test_set.json needs uint8"):
        TestSet.load(comp.truth)
    (comp.truth / "masks.npy").unlink()
    with pytest.raises(TruthError, match="masks.npy is missing"):
        TestSet.load(comp.truth)
