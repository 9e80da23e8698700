"""`segkit student` and `segkit grade`: the course aids on the command line (nbformat, nbclient and torch are
imported only when a command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run_student(args: argparse.Namespace) -> int:
    from segkit.course.student import make_student
    from segkit.paths import repo_root

    src = Path(args.src) if args.src else repo_root() / "notebooks"
    out = Path(args.out) if args.out else repo_root() / "student"
    written = make_student(src, out)
    print(f"wrote {len(written)} student notebook(s) to {out / 'notebooks'}")
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return int(text)


def _run_grade(args: argparse.Namespace) -> int:
    import secrets

    from segkit.course import grading
    from segkit.paths import NOTEBOOK_SIZES, repo_root

    if args.size not in NOTEBOOK_SIZES:
        raise ValueError(f"--size {args.size!r}: expected one of {', '.join(NOTEBOOK_SIZES)}")
    course = grading.course_exercises(Path(args.notebooks) if args.notebooks else repo_root() / "notebooks")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    print(f"checking every exercise on cases drawn with seed {seed} (pass --seed {seed} to repeat)")
    reports, columns = grading.grade_submissions(
        args.submissions, course, seed=seed, notebooks=args.notebook, jobs=args.jobs,
        size=args.size, timeout=args.timeout, check_timeout=args.check_timeout,
    )  # fmt: skip
    out = Path(args.out)
    feedback = Path(args.feedback) if args.feedback else out.with_name(out.stem + "-feedback")
    grading.write_grades(reports, columns, out)
    written = grading.write_feedback(reports, columns, feedback, seed)
    print(f"wrote {out} ({len(reports)} students, {len(columns)} exercises) and {len(written)} feedback "
          f"file(s) in {feedback}")  # fmt: skip
    return 0


def add_course_commands(subparsers) -> None:
    """Register `segkit student` and `segkit grade`."""
    parser = subparsers.add_parser(
        "student",
        help="write the student copies of the notebooks (solutions replaced by stubs)",
        description="Write student copies of the course notebooks into OUT/notebooks/: code cells tagged "
        "'solution' keep their imports and function/class headers and raise NotImplementedError; "
        "outputs are cleared.",
    )
    parser.add_argument("--out", default=None, help="output folder (default: <repo>/student)")
    parser.add_argument(
        "--src", default=None, help="folder of the instructor notebooks (default: <repo>/notebooks)"
    )
    parser.set_defaults(func=_run_student)

    grade = subparsers.add_parser(
        "grade",
        help="grade the exercises of submitted notebooks: one CSV row and one feedback file per student",
        description=(
            "Run every SUBMISSIONS/<student>/<notebook>.ipynb in its own Jupyter kernel (quick size, a "
            "time limit), check each exercise on cases drawn from a seed the notebooks do not contain, "
            "and write OUT (student, one column per exercise: 1 point when every case agrees, total) and "
            "one feedback file per student. A notebook that fails or hangs costs only the exercises it "
            "affects; the feedback says why. The students' code runs with your rights: grade in a "
            "container or a VM."
        ),
        epilog="example: segkit grade submitted/ --out grades.csv --notebook 06_imbalance_and_metrics",
    )
    grade.add_argument("submissions", help="folder holding one folder per student with their .ipynb files")
    grade.add_argument("--out", required=True, help="the CSV to write, e.g. grades.csv")
    grade.add_argument("--feedback", default=None,
                       help="folder for the <student>.txt feedback files "
                            "(default: <OUT without .csv>-feedback)")
    grade.add_argument("--notebook", action="append", default=None, metavar="STEM",
                       help="grade this notebook (e.g. 04_losses; repeat for several; default: every course "
                            "notebook that some student submitted)")
    grade.add_argument("--seed", type=int, default=None,
                       help="seed of the cases (default: a random one, printed so that it can be repeated)")
    grade.add_argument("--timeout", type=_positive, default=600,
                       help="seconds for all the cells of one notebook (default 600)")
    grade.add_argument("--check-timeout", type=_positive, default=120,
                       help="seconds for checking one exercise (default 120)")
    grade.add_argument("--jobs", type=_jobs, default=1,
                       help="notebooks graded at once, each in its own process and kernel (default 1)")
    grade.add_argument("--size", default="quick", help="SEGKIT_SIZE for the notebooks (default quick)")
    grade.add_argument("--notebooks", default=None,
                       help="folder of the instructor notebooks (default: <repo>/notebooks)")
    grade.set_defaults(func=_run_grade)
