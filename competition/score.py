"""Score one submission and record it on the board (instructor tool).

    python competition/score.py SUBMISSION.zip --team NAME --truth COMP/truth --board COMP/board

Prints what the team may see: the public-split score (or, on rejection, every problem found).  Exit status:
0 accepted, 1 rejected (recorded on the board), 2 the command or the competition folder is wrong (nothing
recorded).  The rules and limits are in COMP/board/competition.json; see competition/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import segkit  # noqa: F401
except ImportError:  # running from a checkout where segkit is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segkit.competition.board import Board, BoardError
from segkit.competition.rules import RulesError
from segkit.competition.scoring import student_report, submit
from segkit.competition.truth import TruthError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate, score and record one competition submission.")
    parser.add_argument("submission", type=Path, help="the team's zip of <image_id>.png masks")
    parser.add_argument("--team", required=True, help="team name (letters, digits, space, '-', '_', '.')")
    parser.add_argument("--truth", required=True, type=Path, help="the truth folder made by setup.py")
    parser.add_argument("--board", required=True, type=Path, help="the board folder made by setup.py")
    args = parser.parse_args(argv)
    try:
        row, result = submit(args.submission, args.team, args.truth, args.board)
        board = Board(args.board)
    except (ValueError, TruthError, BoardError, RulesError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(student_report(row, result, board))
    return 0 if row.accepted else 1


if __name__ == "__main__":
    sys.exit(main())
