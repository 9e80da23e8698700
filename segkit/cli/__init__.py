"""The `segkit` command line (also `python -m segkit`): one module per command group.

    data.py         segkit data shapes | stats
    paths.py        segkit paths
    run.py          segkit train | evaluate | predict
    search.py       segkit search
    deep_prior.py   segkit deep-prior score | search
    competition.py  segkit competition setup | teams | serve | score | leaderboard | choose; segkit submit
    course.py       segkit student | grade

Each module registers its commands with one function, `add_<group>_commands(subparsers)`. A command stores
its handler in `func`; the handler gets the parsed arguments and returns the exit status (0 = success).
The modules import nothing heavy at the top: torch, optuna and nbformat load inside the handlers, so every
`--help` answers at once, and a config is checked before torch is imported.
"""

from __future__ import annotations

import argparse
import sys

from segkit.cli.competition import add_competition_commands, add_submit_command
from segkit.cli.course import add_course_commands
from segkit.cli.data import add_data_commands
from segkit.cli.deep_prior import add_deep_prior_commands
from segkit.cli.paths import add_paths_commands
from segkit.cli.run import add_run_commands
from segkit.cli.search import add_search_commands
from segkit.errors import StopError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segkit",
        description="segkit: a teaching toolkit for semantic segmentation (PASCAL VOC-2012 style).",
        epilog="Run 'segkit <command> --help' for the options and examples of a command.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    add_data_commands(subparsers)
    add_paths_commands(subparsers)
    add_run_commands(subparsers)
    add_search_commands(subparsers)
    add_deep_prior_commands(subparsers)
    add_competition_commands(subparsers)
    add_submit_command(subparsers)
    add_course_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the sub-command and return its exit status.

    Expected problems (missing files, bad values, a config that does not match the schema, a run that
    stopped for a reason a person can act on: segkit.errors.StopError) are printed as one
    'segkit: error: ...' message with exit status 2 instead of a traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, StopError) as err:
        print(f"segkit: error: {err}", file=sys.stderr)
        return 2
