"""The measured notebook times (bench/notebook_times.json, written by bench/notebooks.py) are complete, say
that every notebook has a size that fits a lesson, and are the ones the syllabus and the notebooks' first
cells quote. The times themselves are not measured here: a test never times anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
TIMES = json.loads((REPO / "bench" / "notebook_times.json").read_text())["notebooks"]
SIZES = ("quick", "class", "full")
LESSON = 15 * 60 * 1.1  # "about 15 minutes"


def quoted_seconds(text: str) -> tuple[float, float]:
    """'40 s' -> (40, 0.5), '6 min' -> (360, 30), '1 h 05 min' -> (3900, 30)."""
    hours, value, unit = re.fullmatch(r"(?:(\d+) h )?(\d+) (s|min)(?: \(= full\))?", text).groups()
    if unit == "s":
        return float(value), 0.5
    return 3600 * int(hours or 0) + 60 * int(value), 30.0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_every_size_was_measured_and_one_fits_a_lesson(path):
    sizes = TIMES.get(path.stem)
    assert sizes is not None, f"{path.stem}: not measured (bench/notebooks.py --only {path.stem})"
    for size in SIZES:
        assert size in sizes and sizes[size]["ok"], f"{path.stem}: no successful {size} run recorded"
        assert sizes[size]["leftover_bytes"] == 0, f"{path.stem} [{size}] left files in its temporary folder"
    assert min(sizes["class"]["seconds"], sizes["full"]["seconds"]) <= LESSON
    if sizes["class"].get("same_as") == "full":  # one run quoted twice: it must be the full run on record
        assert sizes["class"] == {**sizes["full"], "same_as": "full"}, f"{path.stem}: class is an older run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_header_quotes_the_measured_times(path):
    header = nbformat.read(path, as_version=4).cells[0].source
    paragraph = re.search(r"<!-- sizes: begin.*?-->\n(.*?)\n<!-- sizes: end -->", header, re.DOTALL)
    assert paragraph, f"{path.name}: no sizes paragraph (bench/notebooks.py --update-docs)"
    for size in SIZES:
        quoted = re.search(rf"`{size}` ((?:\d+ h )?\d+ (?:s|min))", paragraph.group(1))
        assert quoted, f"{path.name}: no time for {size}"
        seconds, rounding = quoted_seconds(quoted.group(1))
        assert abs(seconds - TIMES[path.stem][size]["seconds"]) <= rounding


def test_the_syllabus_table_quotes_the_measured_times():
    text = (REPO / "lectures" / "syllabus.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        link = re.fullmatch(r"\[(\w+)\]\(\.\./notebooks/\1\.ipynb\)", cells[1]) if len(cells) > 4 else None
        if link:
            rows[link.group(1)] = cells[2:5]
    assert set(rows) == {path.stem for path in NOTEBOOKS}
    for stem, quoted in rows.items():
        for size, text_time in zip(SIZES, quoted, strict=True):
            seconds, rounding = quoted_seconds(text_time)
            assert abs(seconds - TIMES[stem][size]["seconds"]) <= rounding, (stem, size, text_time)
