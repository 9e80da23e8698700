"""Competition set-up (competition/setup.py, segkit.competition.truth and .rules), and the small builders that
the other test_competition_* files share: a tiny dataset with held-back test labels, a competition made from
it, PNG bytes and zips made in memory."""

from __future__ import annotations

import json
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
    """The part of a VOC-layout dataset that the set-up reads: test.txt and test-labels/<id>.png."""
    rng = np.random.default_rng(seed)
    lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "test.txt").write_text("".join(f"{i}\n" for i in sizes))
    (root / "test-labels").mkdir()
    masks = {}
    for image_id, (height, width) in sizes.items():
        masks[image_id] = random_truth(rng, height, width)
        write_mask(root / "test-labels" / f"{image_id}.png", masks[image_id])
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
    from segkit.competition.truth import prepare_competition

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
    make_shapes(tmp_path / "shapes", seed=0, size=32, n_train=1, n_val=1, n_test=4)
    assert competition("setup", "--data", str(tmp_path / "shapes"), "--out", str(tmp_path / "comp"),
                                      "--seed", "1") == 0
    from segkit.competition.scoring import submit

    row, result = submit(tmp_path / "comp" / "sample_submission.zip", "baseline", tmp_path / "comp" / "truth",
                         tmp_path / "comp" / "board")
    assert row.accepted, row.message
    # all-background: background IoU = background pixels / non-void pixels of the public split
    truth = np.concatenate([read_mask(tmp_path / "shapes" / "test-labels" / f"{i}.png").ravel()
                            for i in sorted(TestSet.load(tmp_path / "comp" / "truth").public)])
    labelled = truth[truth != 255]
    assert result.public["iou"][0] == pytest.approx(np.mean(labelled == 0))
    assert result.public["pixel_accuracy"] == pytest.approx(np.mean(labelled == 0))


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
