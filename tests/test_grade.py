"""`segkit grade`: real notebooks run in real kernels, graded on cases from a seed the notebooks do not hold.

Three copies of notebook 06 (solved, the generated student copy, and the solved copy with one planted wrong
answer) and a small hand-made notebook that breaks in the ways a student notebook breaks (a cell raising,
a cell hanging, a file that is no notebook, a notebook not submitted). The expected points are written by
hand from what each copy contains.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from segkit.cli import main
from segkit.course.student import is_solution, student_notebook

REPO = Path(__file__).resolve().parent.parent
METRICS = REPO / "notebooks" / "06_imbalance_and_metrics.ipynb"
METRICS_EXERCISES = ["confusion_matrix", "iou_per_class", "precision_recall"]


def read_grades(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def plant_swapped_precision(notebook):
    """The solved notebook with precision and recall computed from swapped sums (a classic mistake)."""
    for cell in notebook.cells:
        if is_solution(cell) and cell.source.startswith("def precision_recall"):
            assert "tp, predicted, true = matrix.diag(), matrix.sum(0), matrix.sum(1)" in cell.source
            cell.source = cell.source.replace(
                "tp, predicted, true = matrix.diag(), matrix.sum(0), matrix.sum(1)",
                "tp, predicted, true = matrix.diag(), matrix.sum(1), matrix.sum(0)",
            )
            return notebook
    raise AssertionError("notebook 06 has no precision_recall solution cell")


@pytest.fixture(scope="module")
def graded_metrics(tmp_path_factory):
    """Grade three students who submitted notebook 06 (the course's notebooks/ as the instructor copies)."""
    root = tmp_path_factory.mktemp("grading")
    solved = nbformat.read(METRICS, as_version=4)
    copies = {
        "alice": solved,
        "bob": student_notebook(solved),
        "carol": plant_swapped_precision(nbformat.read(METRICS, as_version=4)),
    }
    for student, notebook in copies.items():
        (root / "submitted" / student).mkdir(parents=True)
        nbformat.write(notebook, root / "submitted" / student / METRICS.name)
    status = main(["grade", str(root / "submitted"), "--out", str(root / "grades.csv"), "--seed", "917",
                   "--jobs", "2"])  # two notebooks at once: what a class needs, and quicker here
    assert status == 0
    return root


def test_solved_notebook_gets_full_marks(graded_metrics):
    grades = read_grades(graded_metrics / "grades.csv")
    assert list(next(iter(grades.values()))) == ["student", *METRICS_EXERCISES, "total"]
    assert [grades["alice"][name] for name in METRICS_EXERCISES] == ["1", "1", "1"]
    assert grades["alice"]["total"] == "3"


def test_student_copy_gets_zero_and_is_told_it_is_not_written(graded_metrics):
    grades = read_grades(graded_metrics / "grades.csv")
    assert [grades["bob"][name] for name in METRICS_EXERCISES] == ["0", "0", "0"]
    assert grades["bob"]["total"] == "0"
    feedback = (graded_metrics / "grades-feedback" / "bob.txt").read_text()
    assert feedback.count("not written yet") == 3
    assert "Feedback for bob: 0/3 points" in feedback


def test_one_planted_wrong_answer_loses_exactly_that_exercise(graded_metrics):
    grades = read_grades(graded_metrics / "grades.csv")
    assert [grades["carol"][name] for name in METRICS_EXERCISES] == ["1", "1", "0"]
    assert grades["carol"]["total"] == "2"
    feedback = (graded_metrics / "grades-feedback" / "carol.txt").read_text()
    line = next(line for line in feedback.splitlines() if line.strip().startswith("precision_recall"))
    assert "0/1  ❌ precision_recall:" in line
    assert "cases drawn with seed 917" in feedback


def test_cases_come_from_the_given_seed_not_the_notebooks(graded_metrics):
    """The grader's cases are drawn with --seed; the student copies call check() with seed 0."""
    import numpy as np

    from segkit.course.exercises import EXERCISES

    seen = EXERCISES["precision_recall"].make_cases(np.random.default_rng(0))
    graded = EXERCISES["precision_recall"].make_cases(np.random.default_rng(917))
    assert not all(np.array_equal(a[1][0], b[1][0]) for a, b in zip(seen, graded, strict=True))
    assert "seed=" not in "".join(cell.source for cell in nbformat.read(METRICS, as_version=4).cells
                                  if "check(" in cell.source)  # fmt: skip


# ------------------------------------------------------------------------- notebooks that break


def code(source: str, solution: bool = False):
    cell = nbformat.v4.new_code_cell(source)
    if solution:
        cell.metadata["tags"] = ["solution"]
    return cell


WINDOWS = '''def window_starts(length, window, stride):
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
'''
SIZE = '''def conv_output_size(size, layers):
    for kernel, stride, padding, dilation in layers:
        size = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return size
'''


def mini_notebook(*middle):
    """Two exercises, windows first and sizes last, with `middle` cells between their solutions."""
    return nbformat.v4.new_notebook(cells=[
        code("from segkit.course.exercises import check"),
        code(WINDOWS, solution=True),
        code('check("window_starts", window_starts)'),
        *middle,
        code(SIZE, solution=True),
        code('check("conv_output_size", conv_output_size)'),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def graded_breakage(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakage")
    (root / "course").mkdir()
    nbformat.write(mini_notebook(), root / "course" / "00_mini.ipynb")
    students = {
        "dana": mini_notebook(code("1 / 0")),  # a cell raises: the next cells still run
        "eve": mini_notebook(code("import time\nwhile True:\n    time.sleep(0.1)")),  # hangs until the limit
    }
    for student, notebook in students.items():
        (root / "submitted" / student).mkdir(parents=True)
        nbformat.write(notebook, root / "submitted" / student / "00_mini.ipynb")
    (root / "submitted" / "frank").mkdir()
    (root / "submitted" / "frank" / "00_mini.ipynb").write_text("{ this is not json")
    (root / "submitted" / "gus").mkdir()
    (root / "submitted" / "gus" / "notes.txt").write_text("forgot the notebook")
    status = main(["grade", str(root / "submitted"), "--out", str(root / "grades.csv"), "--seed", "5",
                   "--notebooks", str(root / "course"), "--timeout", "12"])  # fmt: skip
    assert status == 0
    return root


def test_a_failing_cell_costs_only_what_depends_on_it(graded_breakage):
    grades = read_grades(graded_breakage / "grades.csv")
    assert (grades["dana"]["window_starts"], grades["dana"]["conv_output_size"], grades["dana"]["total"]) == (
        "1", "1", "2")  # fmt: skip
    feedback = (graded_breakage / "grades-feedback" / "dana.txt").read_text()
    assert "cell 3: ZeroDivisionError: division by zero" in feedback


def test_a_hanging_notebook_is_stopped_and_scores_what_ran_before(graded_breakage):
    grades = read_grades(graded_breakage / "grades.csv")
    assert (grades["eve"]["window_starts"], grades["eve"]["conv_output_size"], grades["eve"]["total"]) == (
        "1", "0", "1")  # fmt: skip
    feedback = (graded_breakage / "grades-feedback" / "eve.txt").read_text()
    assert "cell 3: timed out after" in feedback
    assert "cell 4: not run: the notebook's 12 s were up" in feedback
    assert "conv_output_size is not defined" in feedback


def test_unreadable_and_missing_notebooks_score_zero_with_the_reason(graded_breakage):
    grades = read_grades(graded_breakage / "grades.csv")
    assert grades["frank"]["total"] == "0" and grades["gus"]["total"] == "0"
    assert "could not read 00_mini.ipynb" in (graded_breakage / "grades-feedback" / "frank.txt").read_text()
    gus = (graded_breakage / "grades-feedback" / "gus.txt").read_text()
    assert "00_mini.ipynb: not submitted" in gus
    assert "not graded (not a notebook of this assignment): notes.txt" in gus


def test_bad_arguments_are_short_errors(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.csv")]) == 2
    assert "segkit: error: submissions folder not found:" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "g.csv")]) == 2
    assert "no student folders in" in capsys.readouterr().err
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    (tmp_path / "subs" / "ann" / "06_imbalance_and_metrics.ipynb").write_text("{}")
    out = str(tmp_path / "g.csv")
    assert main(["grade", str(tmp_path / "subs"), "--out", out, "--notebook", "99_x"]) == 2
    assert "not a course notebook with exercises: 99_x" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "g.csv"), "--size", "big"]) == 2
    assert "--size 'big': expected one of quick, class, full" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "g.csv"), "--jobs", "0"])
    assert "--jobs: must be a positive whole number, got 0" in capsys.readouterr().err
