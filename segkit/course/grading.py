"""Grading the exercises of submitted notebooks: `segkit grade SUBMISSIONS_DIR --out grades.csv`.

    SUBMISSIONS_DIR/<student>/<notebook>.ipynb      (as an LMS export or nbgrader's collect step leaves them)
    -> grades.csv                                   one row per student: 1 point per exercise passed, total
    -> grades-feedback/<student>.txt                what ran, and the verdict of every exercise

Which exercises a notebook has is read from the instructor's copy (notebooks/NN_topic.ipynb): every
`check("name", expression)` call names an exercise and the expression that gives the student's function.
Each student notebook then runs in its own Jupyter kernel (segkit.course.execute), at the quick size, in a
fresh temporary folder:

1. the student's cells, top to bottom, within `timeout` seconds in all; a cell that raises or runs past the
   limit is recorded and the next cells still run, so a broken cell costs only what depends on it;
2. one grading cell per exercise, each within `check_timeout` seconds: it evaluates the expression in the
   notebook's namespace and runs the exercise's checker (segkit.course.exercises.run_checks) on cases drawn
   with `seed`, a number the student copies do not contain (their checks use seed 0), so an answer written
   for the cases a student has seen does not pass by itself.

An exercise scores 1 point when every case agrees, else 0, with the reason in the feedback: not submitted,
the function is not defined (its cell failed or never ran), not written yet (the student copy's stub), the
checker's first disagreement, a time-out, or a kernel that died.

The students' code runs with the grader's rights, as in any autograder: run it in a container or a virtual
machine of its own, never on a machine with secrets.
"""

from __future__ import annotations

import ast
import concurrent.futures
import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

GRADE_MARKER = "SEGKIT-GRADE "
"""The grading cells print one line starting with this marker and holding the verdict as JSON."""


@dataclass
class NotebookExercise:
    """An exercise as a notebook checks it: check(name, expression)."""

    name: str
    expression: str  # e.g. "my_rgb_to_mask", evaluated in the student's namespace


@dataclass
class Score:
    """The grade of one exercise for one student."""

    notebook: str
    exercise: str
    points: int
    reason: str  # the checker's verdict line, or why there was none


@dataclass
class StudentReport:
    student: str
    scores: list[Score] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per notebook: how it ran, files ignored

    @property
    def total(self) -> int:
        return sum(score.points for score in self.scores)


# ----------------------------------------------------------------------------------------- exercises


def notebook_exercises(notebook) -> list[NotebookExercise]:
    """The check("name", expression) calls of a notebook's code cells, in order (first call per name)."""
    found: dict[str, NotebookExercise] = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            is_check = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check"
            if not is_check or len(node.args) < 2:
                continue
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value not in found:
                found[name.value] = NotebookExercise(name.value, ast.unparse(node.args[1]))
    return list(found.values())


def course_exercises(notebooks_dir: str | os.PathLike) -> dict[str, list[NotebookExercise]]:
    """Notebook stem -> its exercises, for every instructor notebook in `notebooks_dir` that has some."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"instructor notebooks folder not found: {folder}")
    table = {}
    for path in sorted(folder.glob("*.ipynb")):
        exercises = notebook_exercises(nbformat.read(path, as_version=4))
        if exercises:
            table[path.stem] = exercises
    if not table:
        raise FileNotFoundError(f"no notebook in {folder} has exercises (check(...) calls)")
    return table


# ------------------------------------------------------------------------------- inside the kernel


def grading_cell(exercise: NotebookExercise, seed: int) -> str:
    """The code of the grading cell for one exercise (run after the student's cells)."""
    return (
        "from segkit.course.grading import grade_in_kernel as _segkit_grade\n"
        f"_segkit_grade({exercise.name!r}, {exercise.expression!r}, globals(), seed={seed})\n"
    )


def grade_in_kernel(name: str, expression: str, namespace: dict, seed: int) -> None:
    """Run in the student's kernel: evaluate `expression`, check it against exercise `name` with `seed`,
    and print GRADE_MARKER + JSON {"status", "agreed", "total", "message"}."""
    from segkit.course.exercises import run_checks

    try:
        function = eval(expression, namespace)  # the expression the instructor's notebook passes to check()
    except NameError as error:
        message = f"{expression} is not defined ({error}): its cell raised or did not run"
        result = {"status": "missing", "agreed": 0, "total": 0, "message": message}
    except Exception as error:
        message = f"{expression} could not be evaluated: {type(error).__name__}: {error}"
        result = {"status": "missing", "agreed": 0, "total": 0, "message": message}
    else:
        verdict = run_checks(name, function, seed=seed)
        result = {"status": verdict.status, "agreed": verdict.agreed, "total": verdict.total,
                  "message": verdict.message}  # fmt: skip
    print(GRADE_MARKER + json.dumps(result))


def _verdict_of(cell) -> dict | None:
    for output in cell.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(GRADE_MARKER):
                return json.loads(line[len(GRADE_MARKER):])
    return None


# --------------------------------------------------------------------------------------- one notebook


def grade_notebook(
    path: Path,
    exercises: list[NotebookExercise],
    *,
    seed: int,
    size: str = "quick",
    timeout: float = 600,
    check_timeout: float = 120,
) -> tuple[list[Score], str]:
    """Run one student notebook and grade its exercises: (scores, a note on how the notebook ran)."""
    from segkit.course.execute import execute_notebook

    stem = path.stem
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not a notebook
        reason = f"could not read {path.name}: {type(error).__name__}: {error}"
        return [Score(stem, exercise.name, 0, reason) for exercise in exercises], reason
    for cell in notebook.cells:  # run what the student wrote, not what their last session printed
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix="segkit-grade-") as work:
        shutil.copy(path, Path(work) / path.name)
        try:
            run = execute_notebook(
                notebook, size=size, timeout=timeout, stop_on_error=False, cwd=work,
                extra_cells=[grading_cell(exercise, seed) for exercise in exercises],
                extra_cell_timeout=check_timeout,
            )  # fmt: skip
        except Exception as error:  # the kernel did not start, or stopped answering
            reason = f"could not run {path.name}: {type(error).__name__}: {error}"
            return [Score(stem, exercise.name, 0, reason) for exercise in exercises], reason
    first_check = len(run.notebook.cells) - len(exercises)
    own_errors = [error for error in run.errors if error.index < first_check]
    note = f"{path.name}: ran in {run.seconds:.0f} s"
    if own_errors:
        note += "; " + "; ".join(str(error) for error in own_errors[:5])
        note += f"; ... ({len(own_errors)} cells failed)" if len(own_errors) > 5 else ""
    else:
        note += ", every cell without an error"
    check_errors = {error.index: error for error in run.errors if error.index >= first_check}
    scores = []
    for offset, exercise in enumerate(exercises):
        index = first_check + offset
        verdict = _verdict_of(run.notebook.cells[index])
        if verdict is None:
            error = check_errors.get(index)
            reason = f"checking it failed: {error.message}" if error else "checking it printed no verdict"
            scores.append(Score(stem, exercise.name, 0, reason))
        else:
            points = 1 if verdict["status"] == "passed" else 0
            scores.append(Score(stem, exercise.name, points, verdict["message"]))
    return scores, note


# -------------------------------------------------------------------------------------- all students


def student_folders(submissions_dir: Path) -> list[Path]:
    if not submissions_dir.is_dir():
        raise FileNotFoundError(f"submissions folder not found: {submissions_dir}")
    folders = sorted(p for p in submissions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(
            f"no student folders in {submissions_dir}: expected {submissions_dir}/<student>/<notebook>.ipynb"
        )
    return folders


def grade_submissions(
    submissions_dir: str | os.PathLike,
    course: dict[str, list[NotebookExercise]],
    *,
    seed: int,
    notebooks: list[str] | None = None,
    jobs: int = 1,
    log=print,
    **run_options,
) -> tuple[list[StudentReport], list[Score]]:
    """Grade every student folder. Returns (reports, the exercise columns as Score templates in order).

    notebooks: the notebook stems to grade; None = every course notebook at least one student submitted.
    jobs: how many notebooks run at once (each in its own worker process and kernel).
    run_options: size, timeout, check_timeout (see grade_notebook).
    """
    folders = student_folders(Path(submissions_dir))
    submitted = {path.stem for folder in folders for path in folder.glob("*.ipynb")}
    if notebooks is None:
        notebooks = [stem for stem in course if stem in submitted]
        if not notebooks:
            raise FileNotFoundError(
                f"no submitted notebook has the name of a course notebook ({', '.join(course)}) in "
                f"{submissions_dir}/<student>/"
            )
    unknown = [stem for stem in notebooks if stem not in course]
    if unknown:
        known = ", ".join(course)
        raise ValueError(f"not a course notebook with exercises: {', '.join(unknown)}; known: {known}")
    columns = [Score(stem, exercise.name, 1, "") for stem in notebooks for exercise in course[stem]]
    # Every submitted notebook is one job; `jobs` of them run at once, each in its own worker process.
    todo = [(folder, stem) for folder in folders for stem in notebooks
            if (folder / f"{stem}.ipynb").is_file()]  # fmt: skip
    graded = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(grade_notebook, folder / f"{stem}.ipynb", course[stem], seed=seed, **run_options):
            (folder, stem) for folder, stem in todo
        }  # fmt: skip
        for future in concurrent.futures.as_completed(futures):
            folder, stem = futures[future]
            graded[folder, stem] = future.result()
            log(f"graded {folder.name}/{stem}.ipynb: {sum(s.points for s in graded[folder, stem][0])} "
                f"of {len(course[stem])}")  # fmt: skip
    reports = []
    for folder in folders:
        report = StudentReport(folder.name)
        ignored = sorted(p.name for p in folder.iterdir() if p.is_file() and p.stem not in notebooks)
        if ignored:
            report.notes.append(f"not graded (not a notebook of this assignment): {', '.join(ignored)}")
        for stem in notebooks:
            if (folder, stem) not in graded:
                report.notes.append(f"{stem}.ipynb: not submitted")
                report.scores += [Score(stem, e.name, 0, "not submitted") for e in course[stem]]
                continue
            scores, note = graded[folder, stem]
            report.scores += scores
            report.notes.append(note)
        log(f"{folder.name}: {report.total}/{len(columns)}")
        reports.append(report)
    return reports, columns


def write_grades(reports: list[StudentReport], columns: list[Score], out: Path) -> None:
    """grades.csv: student, one column per exercise (points), total."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["student", *[column.exercise for column in columns], "total"])
        for report in reports:
            points = {(score.notebook, score.exercise): score.points for score in report.scores}
            row = [points.get((column.notebook, column.exercise), 0) for column in columns]
            writer.writerow([report.student, *row, report.total])


def feedback_text(report: StudentReport, columns: list[Score], seed: int) -> str:
    lines = [f"Feedback for {report.student}: {report.total}/{len(columns)} points",
             f"(each exercise is checked on cases drawn with seed {seed}, not the ones in your notebook)", ""]
    lines += [f"- {note}" for note in report.notes]
    width = max(len(column.exercise) for column in columns)
    notebook = None
    for score in report.scores:
        if score.notebook != notebook:
            notebook = score.notebook
            lines += ["", f"{notebook}.ipynb"]
        reason = score.reason.replace("\n", "\n" + " " * (width + 10))
        lines.append(f"  {score.exercise:<{width}}  {score.points}/1  {reason}")
    return "\n".join(lines) + "\n"


def write_feedback(reports: list[StudentReport], columns: list[Score], folder: Path, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for report in reports:
        path = folder / f"{report.student}.txt"
        path.write_text(feedback_text(report, columns, seed))
        written.append(path)
    return written
