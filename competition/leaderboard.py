"""Write the leaderboard (leaderboard.md, a self-contained leaderboard.html) and print it (instructor tool).

    python competition/leaderboard.py --board COMP/board            live board: best public score per team
    python competition/leaderboard.py --board COMP/board --final    final board: private scores, rank changes

The files go to the board folder unless --out says otherwise.  Open leaderboard.html in a browser on the
projector; the live page reloads itself every minute, so re-running this script after each scoring is enough.
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
from segkit.competition.ranking import final_standings, live_standings
from segkit.competition.render import to_html, to_markdown, to_text
from segkit.competition.rules import RulesError


def write_leaderboard(board_dir: Path, final: bool = False, out_dir: Path | None = None) -> str:
    """Write leaderboard.md and leaderboard.html into out_dir (default: the board folder); return the text."""
    board = Board(board_dir)
    rows = board.submissions()
    if final:
        standings = final_standings(rows, board.selections(), board.rules)
    else:
        standings = live_standings(rows, board.rules)
    out_dir = Path(out_dir or board_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    margin = board.rules.ladder_margin
    (out_dir / "leaderboard.md").write_text(to_markdown(standings, final, margin), encoding="utf-8")
    (out_dir / "leaderboard.html").write_text(to_html(standings, final, margin), encoding="utf-8")
    return to_text(standings, final)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write leaderboard.md and leaderboard.html from the board.")
    parser.add_argument("--board", required=True, type=Path, help="the board folder made by setup.py")
    parser.add_argument("--final", action="store_true", help="the final ranking, on the private split")
    parser.add_argument("--out", type=Path, default=None, help="folder for the two files (default: --board)")
    args = parser.parse_args(argv)
    try:
        table = write_leaderboard(args.board, args.final, args.out)
    except (BoardError, RulesError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table)
    out = args.out or args.board
    print(f"\nwrote {out / 'leaderboard.md'} and {out / 'leaderboard.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
