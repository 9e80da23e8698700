"""Scoring: the numbers equal an independent computation (torchmetrics, numpy), the student sees only the
public split, the daily limit holds, and eight scorings at once (separate processes) all land on the board."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch
from test_competition_setup import (
    NUM_CLASSES,
    SIZES,
    competition,
    make_competition,
    noisy,
    png_bytes,
    prediction_zip,
    write_zip,
)
from torchmetrics.classification import MulticlassJaccardIndex, MulticlassPrecision, MulticlassRecall

from segkit.competition.board import Board
from segkit.competition.scoring import score_submission
from segkit.competition.teams import team_name_problem
from segkit.competition.truth import TestSet
from segkit.data import VOC_CLASSES

DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def reference_metrics(truths: list[np.ndarray], predictions: list[np.ndarray]) -> dict:
    """VOC metrics over all pixels of the given images, from torchmetrics and numpy (not segkit)."""
    truth = torch.from_numpy(np.concatenate([t.ravel() for t in truths]).astype(np.int64))
    pred = torch.from_numpy(np.concatenate([p.ravel() for p in predictions]).astype(np.int64))
    options = {"num_classes": NUM_CLASSES, "average": "none", "ignore_index": 255}
    valid = truth != 255
    in_truth = torch.bincount(truth[valid], minlength=NUM_CLASSES) > 0
    predicted = torch.bincount(pred[valid], minlength=NUM_CLASSES) > 0
    # torchmetrics gives 0 for a 0/0 class; the VOC definition leaves such a class out (NaN)
    iou = MulticlassJaccardIndex(**options)(pred, truth).double()
    iou[~(in_truth | predicted)] = math.nan
    precision = MulticlassPrecision(**options)(pred, truth).double()
    precision[~predicted] = math.nan
    recall = MulticlassRecall(**options)(pred, truth).double()
    recall[~in_truth] = math.nan
    accuracy = (pred[valid] == truth[valid]).double().mean()
    return {"iou": iou.tolist(), "precision": precision.tolist(), "recall": recall.tolist(),
            "miou": float(iou.nanmean()), "pixel_accuracy": float(accuracy)}


def assert_same_metrics(ours: dict, reference: dict) -> None:
    for key in ("iou", "precision", "recall"):
        # torchmetrics computes in float32
        np.testing.assert_allclose(np.array(ours[key], float), reference[key], rtol=1e-6, equal_nan=True)
    assert ours["miou"] == pytest.approx(reference["miou"], rel=1e-6)
    assert ours["pixel_accuracy"] == pytest.approx(reference["pixel_accuracy"], rel=1e-12)


def test_scores_equal_torchmetrics_on_each_split(tmp_path):
    comp = make_competition(tmp_path)
    rng = np.random.default_rng(5)
    predictions = {i: noisy(comp.masks[i], rng, flip=0.4) for i in SIZES}
    members = [(f"{i}.png", png_bytes(p, "L" if i == "img_c" else "P")) for i, p in predictions.items()]
    row, result = comp.submit(write_zip(tmp_path / "sub.zip", members), "owls")
    assert row.accepted, row.message

    for split, ids in (("public", comp.public), ("private", comp.private)):
        reference = reference_metrics([comp.masks[i] for i in ids], [predictions[i] for i in ids])
        assert_same_metrics(getattr(result, split), reference)
        stored = getattr(row, f"{split}_metrics")  # the board keeps the same numbers (NaN as null)
        assert getattr(row, f"{split}_miou") == pytest.approx(reference["miou"], rel=1e-6)
        assert [math.nan if v is None else v for v in stored["iou"]] == pytest.approx(reference["iou"],
                                                                                   nan_ok=True)


def test_void_in_the_truth_is_ignored(tmp_path):
    comp = make_competition(tmp_path)
    rng = np.random.default_rng(6)
    first = {i: noisy(comp.masks[i], rng) for i in SIZES}
    second = {}
    for image_id, prediction in first.items():  # differ from `first` only where the truth is void
        changed = prediction.copy()
        void = comp.masks[image_id] == 255
        changed[void] = (changed[void] + 1) % NUM_CLASSES
        second[image_id] = changed
    _, a = comp.submit(prediction_zip(tmp_path / "a.zip", first), "a")
    _, b = comp.submit(prediction_zip(tmp_path / "b.zip", second), "b")
    assert json.dumps(a.public) == json.dumps(b.public) and json.dumps(a.private) == json.dumps(b.private)


def test_a_perfect_submission_scores_one(tmp_path):
    comp = make_competition(tmp_path)
    perfect = {i: np.where(m == 255, 0, m).astype(np.uint8) for i, m in comp.masks.items()}
    result = score_submission(prediction_zip(tmp_path / "p.zip", perfect), TestSet.load(comp.truth),
                              Board(comp.board).rules)
    assert result.public["miou"] == 1.0 and result.private["miou"] == 1.0


def test_student_sees_public_numbers_only(tmp_path, capsys):
    comp = make_competition(tmp_path)
    rng = np.random.default_rng(7)
    predictions = {i: noisy(comp.masks[i], rng, flip=0.5) for i in SIZES}
    path = prediction_zip(tmp_path / "sub.zip", predictions)
    code = competition("score", str(path), "--team", "owls", "--comp", str(comp.truth.parent))
    printed = capsys.readouterr().out
    assert code == 0
    (row,) = Board(comp.board).submissions()
    public, private = row.public_metrics, row.private_metrics
    assert f"Public mIoU: {public['miou']:.4f}" in printed
    assert f"pixel accuracy {public['pixel_accuracy']:.4f}" in printed
    assert "private" not in printed.lower()
    for key in ("miou", "pixel_accuracy", "mean_precision", "mean_recall"):
        value = private[key]
        assert f"{value:.4f}" not in printed and f"{100 * value:.1f}" not in printed
    assert not any(image_id in printed for image_id in SIZES)  # no per-image results
    # the per-class table is the public split's
    background = next(line for line in printed.splitlines() if line.strip().startswith("background"))
    assert background.split()[1:] == [f"{100 * public[k][0]:.1f}" for k in ("iou", "precision", "recall")]


def test_ladder_hides_small_changes_from_the_student(tmp_path, capsys):
    comp = make_competition(tmp_path, ladder_margin=0.05)
    rng = np.random.default_rng(8)
    noisy_zip = prediction_zip(tmp_path / "noisy.zip",
                               {i: noisy(comp.masks[i], rng, flip=0.6) for i in SIZES})
    perfect = {i: np.where(m == 255, 0, m).astype(np.uint8) for i, m in comp.masks.items()}
    perfect_zip = prediction_zip(tmp_path / "perfect.zip", perfect)
    lines = []
    for path in (noisy_zip, noisy_zip, perfect_zip):
        argv = [str(path), "--team", "owls", "--comp", str(comp.truth.parent)]
        assert competition("score", *argv) == 0
        printed = capsys.readouterr().out
        lines.append(next(line for line in printed.splitlines() if line.startswith("Public score (Ladder")))
        assert "Per class" not in printed  # per-class IoUs would give the exact score away
    exact = Board(comp.board).submissions()[0].public_miou
    # by hand: the first score is shown rounded to a multiple of the margin; the same score again does not
    # beat it by more than the margin, so the shown score stays; a perfect one (1.0) is shown
    first = round(exact / 0.05) * 0.05
    assert lines[0].endswith(f"is now {first:.4f}")
    assert lines[1].endswith(f"it stays at {first:.4f}")
    assert lines[2].endswith("is now 1.0000")
    assert f"{exact:.4f}" not in "".join(lines) or exact == pytest.approx(first)


def test_daily_limit_counts_accepted_submissions_per_utc_day(tmp_path):
    comp = make_competition(tmp_path, daily_limit=2)
    rng = np.random.default_rng(9)
    path = prediction_zip(tmp_path / "sub.zip", {i: noisy(comp.masks[i], rng) for i in SIZES})
    bad = write_zip(tmp_path / "bad.zip", [("img_a.png", b"junk")])
    assert not comp.submit(bad, "owls", now=DAY)[0].accepted  # rejected ones do not count
    assert comp.submit(path, "owls", now=DAY)[0].accepted
    assert comp.submit(path, "owls", now=DAY + timedelta(hours=1))[0].accepted
    third, result = comp.submit(path, "owls", now=DAY + timedelta(hours=2))
    assert not third.accepted and "daily limit reached" in third.message and result.public is None
    assert comp.submit(path, "eagles", now=DAY + timedelta(hours=2))[0].accepted  # per team
    assert comp.submit(path, "owls", now=DAY + timedelta(days=1))[0].accepted  # a new UTC day


def test_bad_team_names_and_missing_files_are_refused_without_recording(tmp_path, capsys):
    comp = make_competition(tmp_path)
    assert team_name_problem("the owls_2.0") is None
    for name in ("", " owls", "x" * 41, "<script>", "a|b", "new\nline"):
        assert team_name_problem(name), name
    sample = str(comp.root / "sample_submission.zip")
    assert competition("score", sample, "--team", "<b>", "--comp", str(comp.truth.parent)) == 2
    assert "team name '<b>' has characters" in capsys.readouterr().err
    missing = tmp_path / "nope.zip"
    assert competition("score", missing, "--team", "a", "--comp", comp.truth.parent) == 2
    assert "nope.zip not found" in capsys.readouterr().err
    assert competition("score", sample, "--team", "a", "--comp", str(tmp_path)) == 2
    assert "no board at" in capsys.readouterr().err
    assert Board(comp.board).submissions() == []


def _score_in_child(barrier, argv: list[str], out_path: str) -> None:
    """Runs in a forked process: wait for the others, then run competition/score.py's main."""
    barrier.wait()
    with open(out_path, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = competition("score", *argv)
    os._exit(code)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs os.fork")
def test_eight_concurrent_scorings_all_land(tmp_path):
    comp = make_competition(tmp_path, daily_limit=1)
    rng = np.random.default_rng(10)
    jobs = []
    for number in range(8):
        team = f"team{number % 4}"  # two submissions per team, but only one allowed per day
        path = prediction_zip(tmp_path / f"s{number}.zip", {i: noisy(comp.masks[i], rng) for i in SIZES})
        jobs.append((team, path))
    expected = {}
    test_set, rules = TestSet.load(comp.truth), Board(comp.board).rules
    for _, path in jobs:
        result = score_submission(path, test_set, rules)
        expected[result.sha256] = (result.public["miou"], result.private["miou"])

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(jobs))
    processes = []
    for number, (team, path) in enumerate(jobs):
        argv = [str(path), "--team", team, "--comp", str(comp.truth.parent)]
        output = str(tmp_path / f"out{number}")
        process = context.Process(target=_score_in_child, args=(barrier, argv, output))
        process.start()
        processes.append(process)
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes].count(0) == 4, [p.exitcode for p in processes]

    rows = Board(comp.board).submissions()
    assert len(rows) == 8 and sorted(r.id for r in rows) == list(range(1, 9))
    for team in {t for t, _ in jobs}:
        statuses = sorted(r.status for r in rows if r.team == team)
        assert statuses == ["accepted", "rejected"], team
    for row in rows:
        if row.accepted:
            assert (row.public_miou, row.private_miou) == pytest.approx(expected[row.sha256])
        else:
            assert "daily limit reached" in row.message and row.public_miou is None
    connection = sqlite3.connect(comp.board / "board.sqlite")
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    json.loads((comp.board / "competition.json").read_text())  # untouched and readable


def test_per_class_table_lists_only_classes_present_in_the_public_truth(tmp_path, capsys):
    """The attack of painting an 8×8 corner of one image with a class the data never uses (tvmonitor, 20):
    the table no longer shows that class, whichever part the image is in; the mIoU itself still moves when
    the image is public (what any public score reveals, as the rules say)."""
    comp = make_competition(tmp_path, daily_limit=10)
    perfect = {i: np.where(m == 255, 0, m).astype(np.uint8) for i, m in comp.masks.items()}
    for image_id in SIZES:
        painted = dict(perfect)
        painted[image_id] = perfect[image_id].copy()
        painted[image_id][:8, :8] = 20
        path = prediction_zip(tmp_path / f"{image_id}.zip", painted)
        assert competition("score", str(path), "--team", "owls", "--comp", str(comp.root)) == 0
        printed = capsys.readouterr().out
        table = printed[printed.index("Per class"):].splitlines()[2:]
        assert [line.split()[0] for line in table] == [
            VOC_CLASSES[c] for c in (0, 1, 3, 7, 15)]  # the classes of the public truth, nothing else
        row = Board(comp.board).submissions()[-1]
        assert (row.public_miou < 1.0) == (image_id in comp.public)
