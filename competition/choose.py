"""Choose which submissions of a team count for the final ranking (instructor tool, on the team's request).

    python competition/choose.py --board COMP/board --team NAME 12 17     count submissions #12 and #17
    python competition/choose.py --board COMP/board --team NAME --clear   back to the best public ones

Without a choice, a team's `final_count` best public submissions count (competition.json).
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
from segkit.competition.ranking import counted_submissions
from segkit.competition.rules import RulesError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Choose a team's submissions for the final ranking.")
    parser.add_argument("--board", required=True, type=Path, help="the board folder made by setup.py")
    parser.add_argument("--team", required=True, help="team name")
    parser.add_argument("ids", nargs="*", type=int, help="submission numbers (as printed by score.py)")
    parser.add_argument("--clear", action="store_true", help="forget the choice: count the best public ones")
    args = parser.parse_args(argv)
    if bool(args.ids) == args.clear:
        parser.error("give submission numbers, or --clear")
    try:
        board = Board(args.board)
        board.select(args.team, [] if args.clear else args.ids)
    except (BoardError, RulesError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = board.submissions(args.team)
    counted = counted_submissions(rows, board.selections().get(args.team), board.rules.final_count)
    how = "chosen" if not args.clear else "default: best public"
    numbers = ", ".join(f"#{r.id}" for r in counted) or "none"
    print(f"team {args.team!r} ({how}): counted submissions {numbers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
