"""Leaderboards: the Ladder by hand, live and final rankings from a board written by hand, the team's choice
of final submissions, escaping, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser_tools import browser_page
from test_competition_setup import competition

from segkit.cli.competition import write_leaderboard
from segkit.competition.board import Board, BoardError
from segkit.competition.ranking import final_standings, ladder, live_standings
from segkit.competition.render import to_markdown
from segkit.competition.rules import Rules

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLASSES = tuple(f"c{i}" for i in range(3))


def empty_board(folder: Path, **options) -> Board:
    rules = Rules(num_classes=3, class_names=CLASSES, max_members=4, max_member_bytes=1000,
                  max_total_bytes=4000, max_zip_bytes=5000, **options)
    return Board.create(folder, rules)


def fill(board: Board, entries: list[tuple[str, float | None, float | None]]) -> None:
    """entries: (team, public mIoU, private mIoU) in time order, one minute apart; None, None = rejected."""
    for minute, (team, public, private) in enumerate(entries):
        when = START + timedelta(minutes=minute)
        if public is None:
            board.record(team, f"{minute:064x}", "s.zip", problems=["broken"], now=when)
        else:
            board.record(team, f"{minute:064x}", "s.zip", public={"miou": public}, private={"miou": private},
                         now=when)


# Submission numbers (ids) in comments.  Worked out by hand:
#   live:  owls best public 0.70 (#2) -> 1;  eagles 0.68 -> 2;  moles 0.40 -> 3;  crows (rejected only) absent
#   final (2 best public count): owls #2 (0.50) and #3 (0.72) -> 0.72;  eagles 0.69;  moles 0.80
#          -> moles 1 (up 2), owls 2 (down 1), eagles 3 (down 1)
ENTRIES = [("owls", 0.60, 0.55),  # 1
           ("owls", 0.70, 0.50),  # 2
           ("owls", 0.65, 0.72),  # 3
           ("eagles", 0.68, 0.69),  # 4
           ("moles", 0.40, 0.80),  # 5
           ("moles", None, None),  # 6 rejected
           ("crows", None, None)]  # 7 rejected


def test_ladder_by_hand():
    scores = [0.500, 0.505, 0.523, 0.515, 0.604, 0.612]
    # 0.500 shown as 0.50; 0.505 is not > 0.50 + 0.01; 0.523 is, shown rounded to 0.52; 0.515 is not;
    # 0.604 is, shown as 0.60; 0.612 > 0.61, shown as 0.61
    assert ladder(scores, 0.01) == pytest.approx([0.50, 0.50, 0.52, 0.52, 0.60, 0.61])
    assert ladder([0.3, 0.2, 0.31], 0.05) == pytest.approx([0.30, 0.30, 0.30])


def test_live_and_final_rankings(tmp_path):
    board = empty_board(tmp_path / "board")
    fill(board, ENTRIES)
    live = live_standings(board.submissions(), board.rules)
    assert [(s.public_rank, s.team, s.public_score, s.submissions) for s in live] == [
        (1, "owls", 0.70, 3), (2, "eagles", 0.68, 1), (3, "moles", 0.40, 1)]
    assert live[2].last_time == (START + timedelta(minutes=4)).isoformat()  # rejected #6 not counted

    final = final_standings(board.submissions(), board.selections(), board.rules)
    assert [(s.private_rank, s.team, s.private_score, s.public_rank, s.rank_change) for s in final] == [
        (1, "moles", 0.80, 3, 2), (2, "owls", 0.72, 1, -1), (3, "eagles", 0.69, 2, -1)]
    assert final[1].counted_ids == (2, 3)

    # owls choose #1 only: their final score becomes 0.55
    board.select("owls", [1])
    final = final_standings(board.submissions(), board.selections(), board.rules)
    assert [(s.team, s.private_score) for s in final] == [("moles", 0.80), ("eagles", 0.69), ("owls", 0.55)]
    board.select("owls", [])  # back to the default
    assert final_standings(board.submissions(), board.selections(), board.rules)[1].team == "owls"


def test_choices_are_checked(tmp_path, capsys):
    board = empty_board(tmp_path / "board", final_count=2)
    fill(board, ENTRIES)
    with pytest.raises(BoardError, match="at most 2"):
        board.select("owls", [1, 2, 3])
    with pytest.raises(BoardError, match="not one of team 'owls'"):
        board.select("owls", [4])
    with pytest.raises(BoardError, match="#6 was rejected"):
        board.select("moles", [6])
    assert competition("choose", "--comp", str(board.folder.parent), "--team", "owls", "3", "1") == 0
    assert "counted submissions #1, #3" in capsys.readouterr().out
    assert competition("choose", "--comp", str(board.folder.parent), "--team", "owls", "4") == 2
    assert board.selections() == {"owls": [1, 3]}


def test_ties_go_to_the_earlier_submission_and_ladder_shows_its_score(tmp_path):
    board = empty_board(tmp_path / "board", ladder_margin=0.05)
    fill(board, [("late", 0.30, 0.3), ("early", 0.62, 0.5), ("late", 0.61, 0.5), ("early", 0.64, 0.5)])
    live = live_standings(board.submissions(), board.rules)
    # Ladder: early shows round(0.62/0.05)*0.05 = 0.60, and 0.64 is not > 0.60 + 0.05; late shows 0.30, then
    # 0.60 (0.61 > 0.35); both show 0.60, and early reached it first
    assert [(s.team, s.public_score) for s in live] == [("early", pytest.approx(0.60)),
                                                        ("late", pytest.approx(0.60))]


def test_leaderboard_script_writes_markdown_and_html(tmp_path, capsys):
    board = empty_board(tmp_path / "board")
    fill(board, [*ENTRIES, ("a|b", 0.1, 0.1)])
    assert competition("leaderboard", "--comp", str(board.folder.parent)) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[2].split() == ["1", "owls", "0.7000", "3", "2026-03-02", "09:02"]
    markdown = (board.folder / "leaderboard.md").read_text()
    assert "| 1 | owls | 0.7000 | 3 | 2026-03-02 09:02 |" in markdown
    assert "| 4 | a\\|b | 0.1000 |" in markdown  # a team name cannot break the table
    page = (board.folder / "leaderboard.html").read_text()
    assert "http" not in page.replace('http-equiv="refresh"', "")  # no external resources
    assert "<script" not in page

    assert competition("leaderboard", "--comp", str(board.folder.parent), "--final", "--out",
                                            str(tmp_path / "out")) == 0
    final_md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| 1 | moles | 0.8000 | 0.4000 | 3 | ▲ 2 |" in final_md
    assert "No accepted submission yet." in to_markdown([], final=False)


def test_html_escapes_team_names(tmp_path):
    board = empty_board(tmp_path / "board")
    fill(board, [("<b>x</b>", 0.5, 0.5)])  # the board stores any name; score.py refuses such names earlier
    competition("leaderboard", "--comp", str(board.folder.parent))
    page = (board.folder / "leaderboard.html").read_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


# ---- the page in a real browser ---------------------------------------------------------------------------


def test_html_page_renders_in_headless_chromium_with_the_boards_ranking(tmp_path):
    board = empty_board(tmp_path / "board")
    fill(board, [*ENTRIES, ("Über Net", 0.69, 0.1)])
    for final, expected in (
        (False, [["1", "owls", "0.7000"], ["2", "Über Net", "0.6900"], ["3", "eagles", "0.6800"],
                 ["4", "moles", "0.4000"]]),
        (True, [["1", "moles", "0.8000"], ["2", "owls", "0.7200"], ["3", "eagles", "0.6900"],
                ["4", "Über Net", "0.1000"]]),
    ):
        write_leaderboard(board.folder, final=final)
        url = (board.folder / "leaderboard.html").resolve().as_uri()
        with browser_page() as page:
            page.goto(url)
            rows = page.evaluate("() => [...document.querySelectorAll('#leaderboard tbody tr')]"
                                 ".map((row) => [...row.cells].map((cell) => cell.textContent.trim()))")
            assert [row[:3] for row in rows] == expected
            shot = tmp_path / f"board-{final}.png"
            page.screenshot(path=str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
