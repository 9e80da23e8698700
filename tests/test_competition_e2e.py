"""A whole competition round end to end: the demo config trained for two epochs on a tiny shapes set ->
a competition drawn from a secret seed -> `segkit predict --root` its student pack -> `segkit competition
score` -> `leaderboard`, and the scores on the board equal `segkit evaluate` of the same checkpoint on the
same images (the public and the private part)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_competition_setup import competition

from segkit.cli import main as segkit
from segkit.competition.board import Board
from segkit.data import make_shapes

TINY = ["data.crop_size=32", "data.base_size=32", "data.batch_size=4", "data.eval_batch_size=2",
        "model.options.base_channels=4", "model.options.depth=2", "train.epochs=2", "train.device=cpu"]


def test_train_predict_score_leaderboard_equals_evaluate(tmp_path, capsys):
    root = make_shapes(tmp_path / "shapes", size=32, n_train=8, n_val=2, n_test=6)
    assert segkit(["train", "shapes_unet", "--set", f"data.root={root}", f"run.dir={tmp_path / 'runs'}",
                   "run.name=demo", *TINY]) == 0
    checkpoint = tmp_path / "runs" / "demo" / "last.pt"

    # instructor: set up (a test set of its own, from a secret seed); student: predict the pack's images;
    # instructor: score and show the board
    comp = tmp_path / "comp"
    assert competition("setup", "--data", "shapes", "--out", str(comp), "--seed", "4444444444444444",
                       "--size", "32", "--n-test", "6") == 0
    pack = comp / "student-pack"
    submission = tmp_path / "submission.zip"
    assert segkit(["predict", str(checkpoint), "--split", "test", "--root", str(pack),
                   "--out", str(submission)]) == 0
    capsys.readouterr()
    assert competition("score", str(submission), "--team", "demo", "--comp", str(comp)) == 0
    printed = capsys.readouterr().out
    (row,) = Board(comp / "board").submissions()
    assert row.accepted and f"Public mIoU: {row.public_miou:.4f}" in printed
    assert competition("leaderboard", "--comp", str(comp)) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:3] == ["1", "demo", f"{row.public_miou:.4f}"]
    assert competition("leaderboard", "--comp", str(comp), "--final") == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:3] == ["1", "demo", f"{row.private_miou:.4f}"]

    # the reference: reveal the test labels to segkit evaluate (a copy of the pack with the truth's masks),
    # one split file per part of the test set
    split = json.loads((comp / "truth" / "test_set.json").read_text())
    revealed = tmp_path / "revealed"
    shutil.copytree(pack, revealed)
    voc = revealed / "VOCdevkit" / "VOC2012"
    shutil.copytree(comp / "truth" / "masks", voc / "SegmentationClass")
    for part in ("public", "private"):
        (voc / "ImageSets" / "Segmentation" / f"{part}.txt").write_text("\n".join(split[part]) + "\n")
        out = tmp_path / f"{part}.json"
        assert segkit(["evaluate", str(checkpoint), "--split", part, "--root", str(revealed),
                       "--out", str(out)]) == 0
        evaluated = json.loads(out.read_text())
        scored = getattr(row, f"{part}_metrics")
        assert evaluated["num_images"] == len(split[part])
        for key in ("iou", "precision", "recall"):
            np.testing.assert_allclose(np.array(scored[key], float), np.array(evaluated[key], float),
                                       rtol=1e-12, equal_nan=True)
        assert scored["miou"] == pytest.approx(evaluated["miou"], rel=1e-12)
        assert scored["pixel_accuracy"] == pytest.approx(evaluated["pixel_accuracy"], rel=1e-12)
