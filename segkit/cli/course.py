"""`segkit student`: the course aids on the command line (nbformat is imported only when a command runs)."""

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


def add_course_commands(subparsers) -> None:
    """Register `segkit student`."""
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
