"""Benchmark of the competition scorer: scoring a VOC-val-sized submission against only decoding its PNGs.

    python bench/score.py                 1,449 masks of 500×375 (the size of VOC-2012 val)
    python bench/score.py --n 200         quicker

Generates (in a temporary folder, deleted afterwards) a test set of synthetic masks with void borders, a
competition made from it by segkit.competition.prepare_competition, and a submission zip of predictions
(the truth with shapes moved and labels changed).  Then, in the same run, taking turns, best of --repeats:

    decode   decode the PNGs of a scoring -- the submission's masks and the truth masks -- into numpy
             arrays, and nothing else (segkit.data.read_mask, from the files on disk)
    score    segkit.competition.scoring.score_submission: hash the zip, check every name and header, read the
             members from the zip in memory, decode, validate, take the truth (decoded once at set-up, see
             segkit.competition.truth), fill the public and private confusion matrices
             (segkit.metrics.ConfusionMatrix) and compute the metrics

and prints score / decode.  Goal: at most 1.3.  For orientation it also prints the confusion-matrix updates
alone (on arrays already in memory) and score / decoding the submission's PNGs only: what is left once the
decoding is paid for is mostly the confusion matrix, about as costly as decoding one PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from segkit.competition.board import Board  # noqa: E402
from segkit.competition.scoring import add_image, score_submission  # noqa: E402
from segkit.competition.truth import TestSet, prepare_competition  # noqa: E402
from segkit.data import read_mask, write_mask  # noqa: E402
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
    predictions = folder / "predictions"
    predictions.mkdir()
    ids = [f"2008_{i:06d}" for i in range(n)]
    (lists / "test.txt").write_text("\n".join(ids) + "\n")
    for image_id in ids:
        truth, prediction = synthetic_pair(rng, height, width)
        write_mask(data / "test-labels" / f"{image_id}.png", truth)
        write_mask(predictions / f"{image_id}.png", prediction)
    prepare_competition(data, folder / "comp", seed=seed)
    submission = folder / "submission.zip"
    pngs = [predictions / f"{image_id}.png" for image_id in ids]
    with zipfile.ZipFile(submission, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in pngs:
            archive.write(path, arcname=path.name)
    return folder / "comp", submission, pngs


def fastest(repeats: int, tasks: dict) -> tuple[dict, dict]:
    """Run every task `repeats` times, taking turns (so that all see the same load on a shared machine);
    return ({name: fastest wall-clock seconds}, {name: last result})."""
    best, results = {name: float("inf") for name in tasks}, {}
    for _ in range(repeats):
        for name, work in tasks.items():
            start = time.perf_counter()
            results[name] = work()
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1449, help="number of test masks (VOC val: 1449)")
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="segkit-bench-score-") as scratch:
        start = time.perf_counter()
        comp, submission, prediction_pngs = make_fixture(Path(scratch), args.n, args.height, args.width,
                                                         args.seed)
        print(f"fixture: {args.n} masks of {args.width}×{args.height}, zip "
              f"{submission.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - start:.1f} s")
        test_set, rules = TestSet.load(comp / "truth"), Board(comp / "board").rules
        truth_pngs = [test_set.mask_path(path.stem) for path in prediction_pngs]

        predictions = [read_mask(p) for p in prediction_pngs]
        truths = [read_mask(p) for p in truth_pngs]

        def confusion_only():  # on one thread, as score_submission runs
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            matrix = ConfusionMatrix(rules.num_classes)
            for prediction, truth in zip(predictions, truths, strict=True):
                add_image(matrix, prediction, truth)
            torch.set_num_threads(threads)
            return matrix.compute()

        times, results = fastest(args.repeats, {
            "decode_sub": lambda: [read_mask(p) for p in prediction_pngs],
            "decode_truth": lambda: [read_mask(p) for p in truth_pngs],
            "matrices": confusion_only,
            "score": lambda: score_submission(submission, test_set, rules),
        })
        result = results["score"]
        assert not result.problems, result.problems[:3]
        decode_sub, decode_truth, matrices, score = (times[k] for k in times)
        decode = decode_sub + decode_truth

    per_image = 1e3 / args.n
    print(f"public mIoU {result.public['miou']:.4f}, private mIoU {result.private['miou']:.4f}")
    print(f"decode submission PNGs   {decode_sub:7.3f} s  ({decode_sub * per_image:.2f} ms per mask)")
    print(f"decode truth PNGs        {decode_truth:7.3f} s  ({decode_truth * per_image:.2f} ms per mask)")
    print(f"confusion matrices only  {matrices:7.3f} s  ({matrices * per_image:.2f} ms per mask)")
    print(f"score the submission     {score:7.3f} s  ({score * per_image:.2f} ms per mask)")
    print(f"ratio score / decode (submission + truth PNGs): {score / decode:.2f}   (goal <= {GOAL})")
    print(f"ratio score / decode (submission PNGs only):    {score / decode_sub:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
