"""Prepare a class competition from a dataset with held-back test labels (instructor tool).

    python competition/setup.py --data data/shapes --out comp [--seed S] [--public-fraction 0.5]

writes comp/truth/ (hidden masks and the public/private split), comp/board/ (rules and the empty board) and
comp/sample_submission.zip (all background; the scorer accepts it).  Keep the seed and comp/truth/ to
yourself.  The walkthrough of a whole round is in competition/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import segkit  # noqa: F401
except ImportError:  # running from a checkout where segkit is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segkit.competition.board import BoardError
from segkit.competition.rules import RulesError
from segkit.competition.truth import TruthError, prepare_competition


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare a competition folder: truth, split, board, sample.")
    parser.add_argument("--data", required=True, type=Path,
                        help="dataset folder with VOCdevkit/.../test.txt and test-labels/<id>.png")
    parser.add_argument("--out", required=True, type=Path, help="new competition folder")
    parser.add_argument("--seed", type=int, default=None, help="seed of the public/private split "
                        "(default: a random one, printed and stored in truth/test_set.json)")
    parser.add_argument("--public-fraction", type=float, default=0.5,
                        help="share of test images that are public")
    parser.add_argument("--daily-limit", type=int, default=5,
                        help="accepted submissions per team per UTC day")
    parser.add_argument("--final-count", type=int, default=2, help="submissions per team counted at the end")
    parser.add_argument("--ladder-margin", type=float, default=None,
                        help="turn on the Ladder with this margin, e.g. 0.01 (default: off)")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="seconds allowed to score one submission")
    args = parser.parse_args(argv)
    try:
        summary = prepare_competition(
            args.data, args.out, seed=args.seed, public_fraction=args.public_fraction,
            daily_limit=args.daily_limit, final_count=args.final_count, ladder_margin=args.ladder_margin,
            time_limit_s=args.time_limit)
    except (TruthError, BoardError, RulesError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"competition ready in {args.out}")
    print(f"  truth (keep private): {summary['truth']}  "
          f"({summary['public']} public + {summary['private']} private test images)")
    print(f"  split seed (keep private): {summary['seed']}")
    print(f"  board and rules:      {summary['board']}  (competition.json)")
    print(f"  sample submission:    {summary['sample_submission']}")
    print("next: python competition/score.py SUBMISSION.zip --team NAME "
          f"--truth {summary['truth']} --board {summary['board']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
