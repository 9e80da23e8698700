"""Benchmark of the competition scorer: scoring a VOC-val-sized submission against only decoding its PNGs.

    python bench/score.py                 1,449 masks of 500×375 (the size of VOC-2012 val)
    python bench/score.py --n 200         quicker

Generates (in a temporary folder, deleted afterwards) a test set of synthetic masks with void borders, a
competition made from it by segkit.competition.prepare.prepare_competition, and a submission zip of
predictions (the truth with shapes moved and labels changed).  Then, in the same run, taking turns,
--repeats rounds of:

    decode   decode the submission's PNGs and nothing else: the very bytes of the zip's members, read into
             memory beforehand, each decoded as Image.open(BytesIO(png)) + np.asarray
    score    segkit.competition.scoring.score_submission: hash the zip, check every name and header, read the
             members from the zip in memory, decode, validate, take the truth (decoded once at set-up, see
             segkit.competition.truth), fill the public and private confusion matrices
             (segkit.metrics.ConfusionMatrix) and compute the metrics

The headline is score / decode, the median over the rounds of the ratio within a round (goal: at most 1.3),
in wall-clock time and in this process's CPU time (less sensitive to busy neighbours).  A scoring decodes
only the submission's PNGs, so that is the honest baseline.  For orientation it also times the parts of a
scoring on their own (reading the members, decode + checks, the confusion matrices on arrays already in
memory) and prints score / (decoding the submission + the truth PNGs), which is what a scorer that decoded
the truth from its PNGs would be compared with: a weaker baseline, labelled as such.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from segkit.competition.board import Board  # noqa: E402
from segkit.competition.prepare import prepare_competition  # noqa: E402
from segkit.competition.scoring import add_image, score_submission  # noqa: E402
from segkit.competition.submission import decode_mask_png, read_capped  # noqa: E402
from segkit.competition.truth import TestSet  # noqa: E402
from segkit.data import write_mask  # noqa: E402
from segkit.metrics import ConfusionMatrix  # noqa: E402

GOAL = 1.3


def synthetic_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) masks (H, W) uint8: 1-4 filled shapes of random VOC classes on background, with
    a 3-pixel void (255) outline in the truth; the prediction moves each shape a little and sometimes gets
    its class wrong, as a mediocre model would."""
    truth = Image.new("L", (width, height), 0)
    prediction = Image.new("L", (width, height), 0)
    draw_truth, draw_prediction = ImageDraw.Draw(truth), ImageDraw.Draw(prediction)
    for _ in range(int(rng.integers(1, 5))):
        label = int(rng.integers(1, 21))
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        box = [x0, y0, x0 + int(rng.integers(30, width // 2)), y0 + int(rng.integers(30, height // 2))]
        shape = "ellipse" if rng.random() < 0.5 else "rectangle"
        getattr(draw_truth, shape)(box, fill=label, outline=255, width=3)
        dx, dy = rng.integers(-12, 13, size=2)
        guess = label if rng.random() < 0.7 else int(rng.integers(0, 21))
        getattr(draw_prediction, shape)([box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy], fill=guess)
    return np.array(truth), np.array(prediction)


def make_fixture(folder: Path, n: int, height: int, width: int, seed: int) -> tuple[Path, Path, list[Path]]:
    """Dataset, competition and submission zip under folder: (competition folder, zip, prediction PNGs)."""
    rng = np.random.default_rng(seed)
    data = folder / "data"
    lists = data / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (data / "test-labels").mkdir()
    images = data / "VOCdevkit" / "VOC2012" / "JPEGImages"  # the set-up copies them into the student pack
    images.mkdir()
    predictions = folder / "predictions"
    predictions.mkdir()
    ids = [f"2008_{i:06d}" for i in range(n)]
    (lists / "test.txt").write_text("\n".join(ids) + "\n")
    for image_id in ids:
        truth, prediction = synthetic_pair(rng, height, width)
        write_mask(data / "test-labels" / f"{image_id}.png", truth)
        write_mask(predictions / f"{image_id}.png", prediction)
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(images / f"{image_id}.jpg")
    prepare_competition(data, folder / "comp", seed=seed)
    submission = folder / "submission.zip"
    pngs = [predictions / f"{image_id}.png" for image_id in ids]
    with zipfile.ZipFile(submission, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in pngs:
            archive.write(path, arcname=path.name)
    return folder / "comp", submission, pngs


def decode_png(png: bytes) -> np.ndarray:
    """The baseline: decode one PNG held in memory into an (H, W) uint8 array, and nothing else."""
    return np.asarray(Image.open(BytesIO(png)))


def decode_all(pngs: list[bytes]) -> None:
    """Decode every PNG, each array dropped at once as the scorer drops it (keeping them all would cost
    page faults for hundreds of MB that a scoring never pays)."""
    for png in pngs:
        decode_png(png)


def timed_rounds(repeats: int, tasks: dict) -> tuple[dict, dict]:
    """Run every task once per round, taking turns (so that all see the same load on a shared machine),
    `repeats` rounds; return ({name: [(wall-clock s, CPU s) per round]}, {name: last result})."""
    times, results = {name: [] for name in tasks}, {}
    for _ in range(repeats):
        for name, work in tasks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = work()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, results


def median_ratio(times: dict, numerator: str, denominators: list[str], clock: int) -> float:
    """Median over the rounds of time[numerator] / sum of time[denominators], all from the same round;
    clock 0: wall-clock, 1: CPU."""
    rounds = zip(times[numerator], *(times[name] for name in denominators), strict=True)
    return statistics.median(top[clock] / sum(part[clock] for part in parts) for top, *parts in rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1449, help="number of test masks (VOC val: 1449)")
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timings; medians are printed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="segkit-bench-score-") as scratch:
        start = time.perf_counter()
        comp, submission, prediction_pngs = make_fixture(Path(scratch), args.n, args.height, args.width,
                                                         args.seed)
        print(f"fixture: {args.n} masks of {args.width}×{args.height}, zip "
              f"{submission.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - start:.1f} s")
        test_set, rules = TestSet.load(comp / "truth"), Board(comp / "board").rules
        ids = [path.stem for path in prediction_pngs]
        with zipfile.ZipFile(submission) as archive:  # the very bytes that the scorer decodes
            submission_pngs = [archive.read(f"{image_id}.png") for image_id in ids]
        truth_pngs = [test_set.mask_path(image_id).read_bytes() for image_id in ids]
        predictions = [np.array(decode_png(png)) for png in submission_pngs]  # writable, as the scorer
        truths = [test_set.read(image_id) for image_id in ids]

        def read_members():  # as check_submission reads them
            data = []
            with zipfile.ZipFile(submission) as archive:
                for info in archive.infolist():
                    with archive.open(info) as stream:
                        data.append(read_capped(stream, rules.max_member_bytes))
            return data

        def decode_and_check():  # as check_submission does: decode + size, mode, value checks; reasons only
            return [decode_mask_png(png, args.height, args.width, rules.num_classes)[1]
                    for png in submission_pngs]

        def confusion_only():  # on one thread, as score_submission runs
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            matrix = ConfusionMatrix(rules.num_classes)
            for prediction, truth in zip(predictions, truths, strict=True):
                add_image(matrix, prediction, truth)
            torch.set_num_threads(threads)
            return matrix.compute()

        times, results = timed_rounds(args.repeats, {
            "decode": lambda: decode_all(submission_pngs),
            "score": lambda: score_submission(submission, test_set, rules),
            "read": read_members,
            "decode_check": decode_and_check,
            "matrices": confusion_only,
            "decode_truth": lambda: decode_all(truth_pngs),
        })
        result = results["score"]
        assert not result.problems, result.problems[:3]
        assert all(reason is None for reason in results["decode_check"])

    print(f"public mIoU {result.public['miou']:.4f}, private mIoU {result.private['miou']:.4f}; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"median of {args.repeats} rounds")
    print(f"{'':46s}{'wall s':>8s}{'CPU s':>8s}{'CPU ms/mask':>13s}")
    rows = [("decode the submission's PNGs (baseline)", "decode"), ("score the submission", "score"),
            ("  alone: read the zip members", "read"),
            ("  alone: decode + checks (decode_mask_png)", "decode_check"),
            ("  alone: confusion matrices (update)", "matrices"),
            ("decode the truth PNGs (no scoring does)", "decode_truth")]
    for label, name in rows:
        wall, cpu = (statistics.median(t[clock] for t in times[name]) for clock in (0, 1))
        print(f"{label:46s}{wall:8.3f}{cpu:8.3f}{cpu * 1e3 / args.n:13.3f}")
    honest = [median_ratio(times, "score", ["decode"], clock) for clock in (0, 1)]
    weaker = [median_ratio(times, "score", ["decode", "decode_truth"], clock) for clock in (0, 1)]
    print(f"score / decode the submission's PNGs:  wall {honest[0]:.2f}, CPU {honest[1]:.2f}   "
          f"(goal <= {GOAL})")
    print(f"(weaker baseline, not the goal: score / decode submission + truth PNGs: wall {weaker[0]:.2f}, "
          f"CPU {weaker[1]:.2f}; a scoring never decodes the truth PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
