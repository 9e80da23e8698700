"""The committed notebooks follow the course conventions (tests/test_notebooks_run.py executes them).

Every notebooks/NN_topic.ipynb: valid nbformat, no outputs and no execution counts, the
`setup_notebook()` call as its first code cell, solutions in cells tagged `solution` whose student stubs
compile, and at the end an exercises section whose checks name registered exercises.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from segkit.course.exercises import EXERCISES
from segkit.course.student import is_solution, stub_source

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

SESSIONS = [
    "01_segmentation_and_voc",
    "02_dataset",
    "03_models",
    "04_losses",
    "05_training",
    "06_imbalance_and_metrics",
    "07_evaluation_and_debugging",
    "08_experiments",
    "09_competition",
]

CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([A-Za-z0-9_]+)["']""")


def test_every_session_has_a_lecture_and_a_notebook():
    missing = [
        f"{folder}/{stem}{suffix}"
        for stem in SESSIONS
        for folder, suffix in (("lectures", ".md"), ("notebooks", ".ipynb"))
        if not (REPO / folder / f"{stem}{suffix}").is_file()
    ]
    assert not missing, f"missing course files: {', '.join(missing)}"


def read(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_no_execution_counts(path):
    dirty = [
        f"cell {index}"
        for index, cell in enumerate(read(path).cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: strip the outputs before committing ({', '.join(dirty)} have outputs "
    "or execution counts), e.g. with Jupyter's 'Clear All Outputs' and save"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_sets_up_the_course(path):
    notebook = read(path)
    kernel = notebook.metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{path.name}: the kernelspec must be python3, got {kernel!r}"
    first_markdown = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    assert first_markdown.source.lstrip().startswith("# "), f"{path.name}: start with a '# Title' cell"
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "from segkit.course import setup_notebook" in first_code.source, path.name
    assert re.search(r"^course = setup_notebook\(", first_code.source, re.MULTILINE), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_are_tagged_and_their_stubs_compile(path):
    solutions = [cell for cell in read(path).cells if is_solution(cell)]
    assert solutions, f"{path.name}: no code cell is tagged 'solution'"
    for cell in solutions:
        stub = stub_source(cell.source)
        ast.parse(stub)  # the student copy must at least be valid Python
        assert "NotImplementedError" in stub


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_checked_exercises(path):
    cells = read(path).cells

    def headings(pattern):
        found = []
        for index, cell in enumerate(cells):
            if cell.cell_type == "markdown" and re.match(pattern, cell.source.lstrip(), re.IGNORECASE):
                found.append(index)
        return found

    # The section starts at the first '## Exercises' heading (or, without one, the first '... exercise').
    starts = headings(r"#+ .*exercises\b") or headings(r"#+ .*exercise")
    assert starts, f"{path.name}: no '## Exercises' heading"
    tail = cells[starts[0] :]
    checked = [name for cell in tail if cell.cell_type == "code" for name in CHECK_CALL.findall(cell.source)]
    assert any(is_solution(cell) for cell in tail), f"{path.name}: the exercises have no solution cell"
    count = len(set(checked))
    assert 2 <= count <= 4, f"{path.name}: expected 2-4 exercises checked at the end, got {checked}"
    unknown = sorted(set(checked) - set(EXERCISES))
    assert not unknown, f"{path.name}: check() names unregistered exercises {unknown}"
    for cell in tail:
        if is_solution(cell):
            assert "check(" not in cell.source, f"{path.name}: put check(...) in its own untagged cell"
