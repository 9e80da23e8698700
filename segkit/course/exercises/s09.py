"""Session 9 exercises: the competition.

    member_problem         is one zip member a valid mask for the test set? (name, size, mode)
    split_public_private   the deterministic public/private split of the test ids (segkit.competition.truth)
    ladder_scores          the Ladder of Blum & Hardt (2015): what the leaderboard shows after each submission
"""

from __future__ import annotations

import zipfile

from segkit.competition.ranking import ladder
from segkit.competition.submission import name_problem
from segkit.competition.truth import split_ids
from segkit.course.exercises.checker import Exercise, register

# -------------------------------------------------------------------------------------- member check


def member_problem(name: str, image_size: tuple[int, int], mode: str,
                   test_sizes: dict[str, tuple[int, int]]) -> str | None:
    """Why one zip member is not a valid submitted mask, or None when it is.

    name: the member's name in the zip, e.g. "test_0003.png".
    image_size: the PNG's size as Pillow gives it, (width, height).
    mode: the PNG's mode as Pillow gives it ("P", "L", "RGB", ...).
    test_sizes: test image id -> (height, width), as in the competition's test_set.json.
    A valid member is named exactly '<image_id>.png' for a test id, with no folder, no '..', no absolute
    path, a lower-case '.png'; has exactly its test image's size; and holds class indices (mode P or L).
    Uses segkit.competition.submission.name_problem for the name rules, as the scorer does.
    """
    reason = name_problem(zipfile.ZipInfo(name))
    if reason is not None:
        return reason
    image_id = name[: -len(".png")]
    if image_id not in test_sizes:
        return f"no test image has id {image_id!r}"
    height, width = test_sizes[image_id]
    if tuple(image_size) != (width, height):
        return f"wrong size {image_size}; the test image is {width}x{height} (width x height)"
    if mode not in ("P", "L"):
        return f"wrong mode {mode!r}; expected 'P' or 'L' (class indices, not colours)"
    return None


def _same_verdict(got, expected) -> str | None:
    """Agree when both accept (None) or both refuse (a message); the wording is the student's own."""
    if expected is None and got is not None:
        return f"this member is valid, but your function refused it ({got!r}); return None for a valid member"
    if expected is not None and (got is None or not isinstance(got, str) or not got):
        return f"this member must be refused ({expected}); your function returned {got!r} instead of a reason"
    return None


def _member_cases(rng) -> list[tuple[str, tuple]]:
    sizes = {"test_0000": (128, 128), "test_0001": (96, 160), "2007_000032": (281, 500)}
    return [
        ("a valid palette mask", ("test_0000.png", (128, 128), "P", sizes)),
        ("a valid greyscale (L) mask of a wide image", ("test_0001.png", (160, 96), "L", sizes)),
        ("a VOC-style id", ("2007_000032.png", (500, 281), "P", sizes)),
        ("path traversal '../x.png'", ("../test_0000.png", (128, 128), "P", sizes)),
        ("a folder inside the zip", ("masks/test_0000.png", (128, 128), "P", sizes)),
        ("an absolute path", ("/test_0000.png", (128, 128), "P", sizes)),
        ("a Windows folder", ("masks\\test_0000.png", (128, 128), "P", sizes)),
        ("upper-case extension .PNG", ("test_0000.PNG", (128, 128), "P", sizes)),
        ("a JPEG name", ("test_0000.jpg", (128, 128), "P", sizes)),
        ("an id that is not in the test set", ("train_0007.png", (128, 128), "P", sizes)),
        ("an RGB (colour) mask", ("test_0000.png", (128, 128), "RGB", sizes)),
        ("an RGBA mask", ("test_0001.png", (160, 96), "RGBA", sizes)),
        ("width and height swapped", ("test_0001.png", (96, 160), "P", sizes)),
        ("a mask at half the size", ("test_0000.png", (64, 64), "L", sizes)),
        _random_member(rng, sizes),
    ]


def _random_member(rng, sizes: dict[str, tuple[int, int]]) -> tuple[str, tuple]:
    """A member of a random test image, valid or with one random fault."""
    image_id = sorted(sizes)[int(rng.integers(len(sizes)))]
    height, width = sizes[image_id]
    fault = ["none", "size", "mode", "folder"][int(rng.integers(4))]
    name = f"{'masks/' if fault == 'folder' else ''}{image_id}.png"
    size = (width, height + 1) if fault == "size" else (width, height)
    what = {"none": "valid", "size": "one pixel too tall", "mode": "an RGB mask", "folder": "inside a folder"}
    mode = "RGB" if fault == "mode" else "P"
    return f"a random test image's mask ({what[fault]})", (name, size, mode, sizes)


register(Exercise(
    name="member_problem",
    description="None for a valid submitted mask (name, size, mode), else the reason it is refused",
    reference=member_problem,
    make_cases=_member_cases,
    hint="refuse '..', folders ('/' or '\\'), absolute paths and anything but '<id>.png' with a known id; "
         "Pillow's size is (width, height) while test_sizes holds (height, width); only modes 'P' and 'L'",
    compare=_same_verdict,
))


# ------------------------------------------------------------------------------- public/private split


def split_public_private(ids: list[str], seed: int, public_fraction: float) -> tuple[list[str], list[str]]:
    """(public ids, private ids), both sorted; the same for any order of `ids`.

    Sort the ids, shuffle them with random.Random(seed).shuffle (a generator of its own: the global one is
    left alone), take the first round(public_fraction * n) as public (at least 1, at most n - 1), the rest
    as private. Same as segkit.competition.truth.split_ids.
    """
    return split_ids(ids, seed, public_fraction)


def _split_cases(rng) -> list[tuple[str, tuple]]:
    ids = [f"test_{i:04d}" for i in range(20)]
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    return [
        ("20 sorted ids, seed 0, half public", (ids, 0, 0.5)),
        ("the same ids listed in another order", (shuffled, 0, 0.5)),
        ("another seed", (ids, 20260501, 0.5)),
        ("7 ids, fraction 0.5 (round, not floor: 4 public)", (ids[:7], 3, 0.5)),
        ("a tiny fraction still leaves 1 public image", (ids[:5], 1, 0.01)),
        ("a fraction near 1 still leaves 1 private image", (ids[:5], 1, 0.99)),
    ]


register(Exercise(
    name="split_public_private",
    description="deterministic public/private split: sort, Random(seed).shuffle, first round(f*n) public",
    reference=split_public_private,
    make_cases=_split_cases,
    hint="order = sorted(ids); random.Random(seed).shuffle(order); n = min(max(round(f * len), 1), len - 1); "
         "return sorted(order[:n]), sorted(order[n:])",
))


# ------------------------------------------------------------------------------------------ the Ladder


def ladder_scores(scores: list[float], margin: float) -> list[float]:
    """The score the Ladder shows after each submission (higher is better), Blum & Hardt (2015):

        R_0 = -inf;   R_t = round(s_t / margin) * margin   if s_t > R_{t-1} + margin,   else R_{t-1}

    Same as segkit.competition.ranking.ladder.
    """
    return ladder(scores, margin)


def _ladder_cases(rng) -> list[tuple[str, tuple]]:
    noisy = [float(v) for v in 0.6 + rng.normal(0, 0.01, 12)]
    return [
        ("the README example, margin 0.01", ([0.500, 0.505, 0.523, 0.515, 0.604, 0.612], 0.01)),
        ("a small improvement (< margin) is not shown", ([0.40, 0.405, 0.409], 0.01)),
        ("margin 0.05", ([0.31, 0.33, 0.37, 0.42, 0.43], 0.05)),
        ("12 noisy submissions of the same model", (noisy, 0.01)),
        ("a single submission", ([0.7341], 0.01)),
        ("no submission", ([], 0.01)),
    ]


register(Exercise(
    name="ladder_scores",
    description="the Ladder: show a new score only when it beats the shown one by more than the margin",
    reference=ladder_scores,
    make_cases=_ladder_cases,
    hint="keep the *shown* score R (start at -inf); a new score s replaces it only if s > R + margin, and "
         "then shows round(s / margin) * margin; otherwise R stays",
))
