"""`segkit paths`: where segkit reads data and writes caches, runs and pretrained weights."""

from __future__ import annotations

import argparse

from segkit.paths import LOCATIONS


def _run_paths(args: argparse.Namespace) -> int:
    from segkit.paths import describe_paths

    print(describe_paths(args.data, args.cache, args.runs, args.pretrained))
    return 0


def add_paths_commands(subparsers) -> None:
    """Register `segkit paths`."""
    parser = subparsers.add_parser(
        "paths",
        help="show where segkit reads data and writes caches, runs and pretrained weights",
        description="Print segkit's folders, where each value came from (argument, environment variable "
        "or default) and whether the folder exists. Precedence: argument > environment > default.",
        epilog="examples:\n  segkit paths\n  SEGKIT_CACHE=/scratch/cache segkit paths\n"
        "  segkit paths --data /datasets/voc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, (env_var, _) in LOCATIONS.items():
        parser.add_argument(f"--{name}", metavar="DIR", help=f"explicit value (wins over ${env_var})")
    parser.set_defaults(func=_run_paths)
