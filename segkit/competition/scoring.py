"""Scoring one submission: check it, score it on the public and private splits, record it on the board.

The score is VOC mIoU accumulated over every pixel of a split (void = 255 in the truth ignored), computed
by `segkit.metrics.ConfusionMatrix`, the very code that evaluates models during training:

    IoU_c = TP_c / (TP_c + FP_c + FN_c)     mIoU = mean of IoU_c over the classes in truth or prediction

Two confusion matrices are filled in the same pass over the zip, one for the public ids and one for the
private ids.  What the student sees (`student_report`) is only ever the public part.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from segkit.competition.board import Board, Submission, daily_limit_message, utc_now
from segkit.competition.ranking import ladder
from segkit.competition.rules import Rules
from segkit.competition.submission import Problem, SubmissionReport, check_submission
from segkit.competition.teams import require_registered
from segkit.competition.truth import TestSet, TruthError
from segkit.data.masks import VOID_INDEX
from segkit.metrics import ConfusionMatrix


@dataclass
class ScoreResult:
    """What scoring one submission produced.  public/private: metric dicts (see `summarise`), None when
    rejected.  seconds_per_image: a model's inference time per test image (None for a zip of masks)."""

    sha256: str
    problems: list[Problem] = field(default_factory=list)
    public: dict | None = None
    private: dict | None = None
    report: SubmissionReport | None = None
    seconds_per_image: float | None = None


def file_sha256(path: str | os.PathLike, limit: int) -> str:
    """Hex sha256 of the file, or a note when it is longer than `limit` bytes (not read past the limit) or
    cannot be read (the checks then report why)."""
    digest, total = hashlib.sha256(), 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    return "(not hashed: file too large)"
                digest.update(chunk)
    except OSError:
        return "(not hashed: file unreadable)"
    return digest.hexdigest()


def summarise(metrics: dict) -> dict:
    """ConfusionMatrix.compute() -> plain JSON-able numbers.

    Keys: miou, pixel_accuracy, mean_precision, mean_recall, and per-class lists iou, precision, recall
    (NaN for a class absent from both truth and prediction).
    """
    return {
        "miou": float(metrics["miou"]),
        "pixel_accuracy": float(metrics["pixel_accuracy"]),
        "mean_precision": float(metrics["mean_precision"]),
        "mean_recall": float(metrics["mean_recall"]),
        "iou": [float(v) for v in metrics["iou"].tolist()],
        "precision": [float(v) for v in metrics["precision"].tolist()],
        "recall": [float(v) for v in metrics["recall"].tolist()],
    }


def add_image(matrix: ConfusionMatrix, prediction: np.ndarray, truth: np.ndarray) -> None:
    """Count one image into the confusion matrix.  prediction, truth: (H, W) uint8 (truth 255 = void).

    torch.from_numpy shares the arrays' memory (no copy); the matrix builds its int16 index from them.
    """
    matrix.update(torch.from_numpy(prediction)[None], torch.from_numpy(truth)[None])


def score_submission(zip_path: str | os.PathLike, test_set: TestSet, rules: Rules) -> ScoreResult:
    """Check and score one zip.  Never raises for a bad submission (only for a broken truth folder)."""
    result = ScoreResult(sha256=file_sha256(zip_path, rules.max_zip_bytes))
    public = ConfusionMatrix(rules.num_classes, ignore_index=VOID_INDEX)
    private = ConfusionMatrix(rules.num_classes, ignore_index=VOID_INDEX)

    def add(image_id: str, prediction: np.ndarray) -> None:
        add_image(public if image_id in test_set.public else private, prediction, test_set.read(image_id))

    # One image at a time is a stream of small tensor operations: waking a pool of threads for each costs more
    # than it saves (much more on a busy machine), so scoring runs on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result.report = check_submission(zip_path, test_set.sizes, rules, add)
    except (TruthError, MemoryError):  # the instructor's to fix; the worker's memory limit (it reports it)
        raise
    except Exception as err:  # a case the checks did not foresee: reject, never crash
        result.problems = [Problem(None, f"the submission could not be read ({type(err).__name__}: {err})")]
        return result
    finally:
        torch.set_num_threads(threads)
    result.problems = list(result.report.problems)
    if not result.problems:
        result.public, result.private = summarise(public.compute()), summarise(private.compute())
    return result


def submit(zip_path: str | os.PathLike, team: str, truth_dir: str | os.PathLike, board_dir: str | os.PathLike,
           now: datetime | None = None) -> tuple[Submission, ScoreResult]:
    """Score `zip_path` for `team` and append the result to the board; returns (the stored row, the result).

    The team is the registered one of that name (ignoring case) when the board has registered teams
    (segkit.competition.teams), else the name checked and merged ignoring case with a team already on it.
    Raises ValueError for a bad or unknown team name, a missing file or a closed competition, TruthError /
    BoardError / RulesError for a broken competition folder: nothing is recorded then.
    """
    board = Board(board_dir)
    team = require_registered(board, team)
    if not Path(zip_path).is_file():
        raise ValueError(f"submission {zip_path} not found (or not a file)")
    closed = board.closed()
    if closed:
        raise ValueError(f"the competition was closed at {closed}; no more submissions")
    test_set = TestSet.load(truth_dir)
    rules = board.rules
    now = now or utc_now()
    used = board.accepted_on_day(team, now.astimezone(UTC).isoformat()[:10])
    if used >= rules.daily_limit:  # checked again inside the board's write transaction
        result = ScoreResult(sha256=file_sha256(zip_path, rules.max_zip_bytes))
        result.problems = [Problem(None, daily_limit_message(team, used, rules.daily_limit))]
    else:
        result = score_submission(zip_path, test_set, rules)
    row = record_result(board, team, Path(zip_path).name, result, now=now)
    return row, result


def record_result(board: Board, team: str, file_name: str, result: ScoreResult, *, kind: str = "masks",
                  now: datetime | None = None, upload_id: int | None = None) -> Submission:
    """Append `result` to the board (one transaction); when the daily limit was reached while it was being
    scored, `result` becomes the rejection the board stored."""
    row = board.record(team, result.sha256, file_name, problems=result.problems, public=result.public,
                       private=result.private, now=now, kind=kind,
                       seconds_per_image=result.seconds_per_image if not result.problems else None,
                       upload_id=upload_id)
    if not row.accepted and not result.problems:  # the limit was reached while this one was being scored
        result.problems = [Problem(p["member"], p["message"]) for p in row.problems]
        result.public = result.private = None
    return row


def student_report(row: Submission, result: ScoreResult, board: Board) -> str:
    """The text shown to the team: public-split numbers only, never the private split or per-image scores."""
    rules = board.rules
    digest = row.sha256 if row.sha256.startswith("(") else f"sha256 {row.sha256[:16]}"
    lines = [f"Submission #{row.id} by team {row.team!r} at {row.time} ({digest})"]
    if not row.accepted:
        problems = row.message.splitlines()
        lines.append(f"REJECTED: {len(problems)} problem(s); nothing was scored and it does not count toward "
                     "the daily limit:")
        lines += [f"  - {problem}" for problem in problems]
        return "\n".join(lines)
    used = board.accepted_on_day(row.team, row.day)
    lines.append(f"ACCEPTED ({used} of {rules.daily_limit} submissions used today, UTC)")
    if row.seconds_per_image is not None:
        lines.append(f"Model run by the server: {1000 * row.seconds_per_image:.1f} ms per test image (CPU)")
    if rules.ladder_margin:
        shown, moved = ladder_shown(board, row)
        if moved:
            verdict = "improved by more than the margin: your shown public score is now"
        else:
            verdict = "not better than your shown score by more than the margin; it stays at"
        lines.append(f"Public score (Ladder, margin {rules.ladder_margin:g}): {verdict} {shown:.4f}")
        lines.append("With the Ladder the exact score of each submission is not shown, to keep the public "
                     "board from being overfitted.")
        return "\n".join(lines)
    public = result.public
    lines.append(f"Public mIoU: {public['miou']:.4f}   pixel accuracy {public['pixel_accuracy']:.4f}   "
                 f"mean precision {public['mean_precision']:.4f}   mean recall {public['mean_recall']:.4f}")
    lines.append("Per class, on the public part of the test set (%; only the classes present in its truth):")
    lines.append(per_class_table(public, rules.class_names))
    return "\n".join(lines)


def ladder_shown(board: Board, row: Submission) -> tuple[float, bool]:
    """(the Ladder's shown public score of row.team right after accepted submission `row`, whether `row`
    moved it)."""
    own = [r for r in board.submissions(row.team) if r.accepted and r.id <= row.id]
    scores = [-math.inf if r.public_miou is None else r.public_miou for r in own]
    shown = ladder(scores, board.rules.ladder_margin)
    return shown[-1], len(shown) == 1 or shown[-1] != shown[-2]


def shown_classes(metrics: dict) -> list[int]:
    """The classes a per-class table may show: those present in the truth of the part (recall defined).

    A class predicted somewhere but absent from the truth (IoU 0, recall undefined) is not listed: listing it
    would tell, for each image painted with a class the data never uses, whether that image is public.
    (The mIoU still counts it, as VOC does, so any public score reveals a little of that; the table no
    longer makes it cheap.)
    """
    return [c for c, recall in enumerate(metrics["recall"]) if recall is not None and not math.isnan(recall)]


def per_class_table(metrics: dict, class_names: tuple[str, ...]) -> str:
    """IoU, precision and recall per class in %, from a `summarise` dict, for the classes of `shown_classes`;
    "-" where undefined (a class never predicted has no precision).  No pixel counts: those would tell the
    class frequencies of the hidden labels."""

    def pct(value) -> str:
        return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"

    width = max(len(name) for name in class_names)
    lines = [f"  {'class':<{width}}  {'IoU':>6}  {'prec.':>6}  {'recall':>6}"]
    for c in shown_classes(metrics):
        iou, precision, recall = metrics["iou"][c], metrics["precision"][c], metrics["recall"][c]
        lines.append(f"  {class_names[c]:<{width}}  {pct(iou):>6}  {pct(precision):>6}  {pct(recall):>6}")
    return "\n".join(lines)
