"""`segkit competition ...`, the instructor's tools for the class competition; `segkit submit`, the students'.

    segkit competition setup --data shapes --out COMP [--seed S] [--public-fraction 0.5] ...
    segkit competition teams add COMP NAME          (prints the team's token once; also list, token,
                                                     instructor)
    segkit competition serve COMP [--host 127.0.0.1] [--port 8000] [--workers 2]
    segkit competition score SUBMISSION.zip --team NAME --comp COMP
    segkit competition leaderboard --comp COMP [--final] [--out DIR]
    segkit competition choose --comp COMP --team NAME 12 17        (or --clear)
    segkit submit FILE --server URL --token TOKEN

COMP is the competition folder written by `setup`: COMP/truth (keep it to yourself) and COMP/board. The rules,
and a whole round step by step, are in competition/README.md. Nothing here imports torchvision or smp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  segkit competition teams add ~/comp2026 owls                  # prints the team's token, once
  segkit competition teams instructor ~/comp2026                # prints the instructor's token
  segkit competition serve ~/comp2026 --host 0.0.0.0 --port 8000  # the web service, for the classroom
  segkit competition setup --data shapes --out ~/comp2026                # a secret seed is drawn
  segkit competition score owls_2.zip --team owls --comp ~/comp2026
  segkit competition leaderboard --comp ~/comp2026               # live board, best public score per team
  segkit competition choose --comp ~/comp2026 --team owls 12 17  # count submissions #12 and #17
  segkit competition leaderboard --comp ~/comp2026 --final       # private scores, rank changes
"""


def competition_errors() -> tuple[type[Exception], ...]:
    """What a wrong competition folder or a wrong argument raises: reported in one line, exit status 2."""
    from segkit.competition.board import BoardError
    from segkit.competition.rules import RulesError
    from segkit.competition.truth import TruthError

    return BoardError, RulesError, TruthError, ValueError, OSError  # TeamError is a ValueError


def fail(error: Exception) -> int:
    print(f"segkit competition: error: {error}", file=sys.stderr)
    return 2


def _run_setup(args: argparse.Namespace) -> int:
    from segkit.competition.prepare import prepare_competition

    try:
        summary = prepare_competition(
            args.data, args.out, seed=args.seed, public_fraction=args.public_fraction,
            daily_limit=args.daily_limit, final_count=args.final_count, ladder_margin=args.ladder_margin,
            time_limit_s=args.time_limit, size=args.size, n_test=args.n_test)
    except competition_errors() as error:
        return fail(error)
    print(f"competition ready in {args.out}")
    print(f"  truth (keep private): {summary['truth']}  "
          f"({summary['public']} public + {summary['private']} private test images)")
    print(f"  secret seed (keep private): {summary['seed']}")
    print(f"  board and rules:      {summary['board']}  (competition.json)")
    print(f"  student pack:         {summary['pack']}  and  {summary['pack_zip']}  (hand this out)")
    print(f"  sample submission:    {summary['sample_submission']}")
    print(f"next: segkit competition teams add {args.out} TEAM-NAME   (prints the team's token)")
    print(f"      segkit competition serve {args.out}")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from segkit.competition.board import Board
    from segkit.competition.scoring import student_report, submit

    comp = Path(args.comp)
    try:
        row, result = submit(args.submission, args.team, comp / "truth", comp / "board")
        board = Board(comp / "board")
    except competition_errors() as error:
        return fail(error)
    print(student_report(row, result, board))
    return 0 if row.accepted else 1


def write_leaderboard(board_dir: Path, final: bool = False, out_dir: Path | None = None) -> str:
    """Write leaderboard.md and leaderboard.html into out_dir (default: the board folder); return the text."""
    from segkit.competition.board import Board
    from segkit.competition.ranking import final_standings, live_standings
    from segkit.competition.render import to_html, to_markdown, to_text

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


def _run_leaderboard(args: argparse.Namespace) -> int:
    board_dir = Path(args.comp) / "board"
    try:
        table = write_leaderboard(board_dir, args.final, args.out)
    except competition_errors() as error:
        return fail(error)
    print(table)
    out = Path(args.out) if args.out else board_dir
    print(f"\nwrote {out / 'leaderboard.md'} and {out / 'leaderboard.html'}")
    return 0


def _run_choose(args: argparse.Namespace) -> int:
    from segkit.competition.board import Board
    from segkit.competition.ranking import counted_submissions

    if bool(args.ids) == args.clear:
        return fail(ValueError("give submission numbers, or --clear"))
    try:
        board = Board(Path(args.comp) / "board")
        board.select(args.team, [] if args.clear else args.ids)
    except competition_errors() as error:
        return fail(error)
    rows = board.submissions(args.team)
    counted = counted_submissions(rows, board.selections().get(args.team), board.rules.final_count)
    how = "chosen" if not args.clear else "default: best public"
    numbers = ", ".join(f"#{r.id}" for r in counted) or "none"
    print(f"team {args.team!r} ({how}): counted submissions {numbers}")
    return 0


def _run_teams(args: argparse.Namespace) -> int:
    from segkit.competition.board import Board
    from segkit.competition.teams import Teams

    try:
        teams = Teams(Board(Path(args.comp) / "board"))
        if args.action == "list":
            names = teams.names()
            print("\n".join(names) if names else "no team registered yet")
            return 0
        if args.action == "instructor":
            token = teams.new_instructor_token()
            print(f"instructor token (shown once; any previous one no longer works):\n{token}")
            return 0
        if not args.name:
            return fail(ValueError(f"teams {args.action}: give the team's name"))
        if args.action == "add":
            name, token = teams.add(args.name)
            note = "" if name == args.name else f" (written {args.name!r}; its NFKC form)"
            print(f"team {name!r} registered{note}. Its token (shown once, keep it safe):\n{token}")
        else:
            name, token = teams.new_team_token(args.name)
            print(f"new token for team {name!r} (the old one no longer works):\n{token}")
    except competition_errors() as error:
        return fail(error)
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from segkit.competition.service import serve

    if args.workers < 1:
        return fail(ValueError(f"--workers must be at least 1, got {args.workers}"))
    try:
        from segkit.competition.board import Board

        Board(Path(args.comp) / "board")
    except competition_errors() as error:
        return fail(error)
    print(f"serving {args.comp} on http://{args.host}:{args.port}/  (Ctrl-C stops; pages: /, /submit, /team, "
          "/instructor)")
    serve(args.comp, host=args.host, port=args.port, workers=args.workers)
    return 0


def _run_submit(args: argparse.Namespace) -> int:
    import os

    from segkit.competition.client import ClientError, submit_file

    token = args.token or os.environ.get("SEGKIT_TOKEN")
    if not token:
        print("segkit submit: error: give --token TOKEN (or set SEGKIT_TOKEN)", file=sys.stderr)
        return 2
    try:
        status, answer = submit_file(args.file, args.server, token)
    except ClientError as error:
        print(f"segkit submit: error: {error}", file=sys.stderr)
        return 2
    if status != 200:
        print(f"segkit submit: the server refused the upload ({status}): {answer.get('error', answer)}",
              file=sys.stderr)
        return 2
    print(answer["report"])
    return 0 if answer["accepted"] else 1


SUBMIT_EXAMPLES = """\
examples:
  segkit submit submission.zip --server http://10.0.0.5:8000 --token 3q2-...      # a zip of masks
  segkit submit runs/my_run/best.pt --server http://10.0.0.5:8000 --token 3q2-...  # a model the server runs
  SEGKIT_TOKEN=3q2-... segkit submit submission.zip --server http://10.0.0.5:8000

Exit status: 0 accepted, 1 rejected (the reasons are printed), 2 not sent or refused (wrong token, closed).
"""


def add_submit_command(subparsers) -> None:
    """Register `segkit submit`."""
    submit = subparsers.add_parser(
        "submit", help="send a submission to the class competition's server",
        description="Upload a zip of masks (or a segkit checkpoint, which the server runs on the test "
                    "images) to the class competition's server and print the result, as the upload page "
                    "shows it.",
        epilog=SUBMIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument("file", type=Path, help="submission.zip (masks) or a checkpoint best.pt")
    submit.add_argument("--server", required=True, help="the server's address, e.g. http://10.0.0.5:8000")
    submit.add_argument("--token", help="your team's token (default: $SEGKIT_TOKEN)")
    submit.set_defaults(func=_run_submit)


def add_competition_commands(subparsers) -> None:
    """Register `segkit competition setup|score|leaderboard|choose`."""
    raw = argparse.RawDescriptionHelpFormatter
    competition = subparsers.add_parser(
        "competition", help="the class competition: set up, teams, web service, score, leaderboard",
        description="The instructor's tools for the class competition (see competition/README.md).",
        epilog=EXAMPLES, formatter_class=raw,
    )
    commands = competition.add_subparsers(dest="competition_command",
                                          metavar="{setup,teams,serve,score,leaderboard,choose}")
    commands.required = True

    setup = commands.add_parser(
        "setup", help="prepare a competition folder: hidden truth, public/private split, board, sample",
        description="Prepare a competition: a test set students never hold (drawn from a secret seed for "
                    "shapes, or a dataset's held-back labels), COMP/truth (keep it private), COMP/board "
                    "(rules and the empty board), COMP/student-pack (test images only: hand it out).",
        epilog=EXAMPLES, formatter_class=raw,
    )
    setup.add_argument("--data", required=True,
                       help="'shapes' (draw a test set of the shapes dataset from the secret seed), or a "
                            "dataset folder with VOCdevkit/.../test.txt, JPEGImages/<id>.jpg and "
                            "test-labels/<id>.png")
    setup.add_argument("--out", required=True, type=Path, help="new competition folder COMP")
    setup.add_argument("--seed", type=int, default=None,
                       help="the competition's secret: draws the shapes test set and splits it public/"
                            "private (default: a random one, printed and stored in truth/test_set.json; for "
                            "shapes at least 16 digits)")
    setup.add_argument("--size", type=int, default=128, help="shapes: image side in pixels (default: 128)")
    setup.add_argument("--n-test", type=int, default=100, help="shapes: test images (default: 100)")
    setup.add_argument("--public-fraction", type=float, default=0.5,
                       help="share of test images that are public")
    setup.add_argument("--daily-limit", type=int, default=5, help="accepted submissions per team per UTC day")
    setup.add_argument("--final-count", type=int, default=2, help="submissions per team counted at the end")
    setup.add_argument("--ladder-margin", type=float, default=None,
                       help="turn on the Ladder with this margin, e.g. 0.01 (default: off)")
    setup.add_argument("--time-limit", type=float, default=300.0,
                       help="seconds allowed to score one submission")
    setup.set_defaults(func=_run_setup)

    teams = commands.add_parser(
        "teams", help="register teams (each gets a token) and the instructor's token",
        description="Teams and tokens. add: register a team and print its token (shown once; only its hash "
                    "is stored). token: a new token for a team. list: the registered teams. instructor: a "
                    "new instructor token (for the instructor page). Names: ASCII letters, digits, space, "
                    "'-', '_', '.', after NFKC; unique ignoring case.", epilog=EXAMPLES, formatter_class=raw,
    )
    teams.add_argument("action", choices=("add", "token", "list", "instructor"))
    teams.add_argument("comp", type=Path, help="the competition folder made by setup")
    teams.add_argument("name", nargs="?", help="team name (add, token)")
    teams.set_defaults(func=_run_teams)

    serve = commands.add_parser(
        "serve", help="the web service: live board, upload page, team history, instructor page, HTTP API",
        description="Serve the competition on the classroom network (Starlette on uvicorn): the live board "
                    "at /, uploads at /submit, a team's history at /team, the instructor's page at "
                    "/instructor, and the HTTP API under /api. Scoring runs in worker processes.",
        epilog=EXAMPLES, formatter_class=raw,
    )
    serve.add_argument("comp", type=Path, help="the competition folder made by setup")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this computer only; 0.0.0.0 for the "
                            "classroom network)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=2, help="scoring processes (default 2)")
    serve.set_defaults(func=_run_serve)

    score = commands.add_parser(
        "score", help="check, score and record one submission; print what the team may see",
        description="Validate, score and record one submission. Exit status: 0 accepted, 1 rejected "
                    "(recorded on the board), 2 the command or the competition folder is wrong (nothing "
                    "recorded).", epilog=EXAMPLES, formatter_class=raw,
    )
    score.add_argument("submission", type=Path, help="the team's zip of <image_id>.png masks")
    score.add_argument("--team", required=True, help="team name (letters, digits, space, '-', '_', '.')")
    score.add_argument("--comp", required=True, type=Path, help="the competition folder made by setup")
    score.set_defaults(func=_run_score)

    leaderboard = commands.add_parser(
        "leaderboard", help="write leaderboard.md and a self-contained leaderboard.html, print the table",
        description="Write the leaderboard (Markdown and a self-contained HTML page that reloads itself "
                    "every minute) and print it.", epilog=EXAMPLES, formatter_class=raw,
    )
    leaderboard.add_argument("--comp", required=True, type=Path, help="the competition folder made by setup")
    leaderboard.add_argument("--final", action="store_true", help="the final ranking, on the private split")
    leaderboard.add_argument("--out", type=Path, default=None,
                             help="folder for the two files (default: COMP/board)")
    leaderboard.set_defaults(func=_run_leaderboard)

    choose = commands.add_parser(
        "choose", help="choose which submissions of a team count for the final ranking",
        description="Record the submissions a team wants counted at the end (without a choice, its "
                    "final_count best public ones count).", epilog=EXAMPLES, formatter_class=raw,
    )
    choose.add_argument("--comp", required=True, type=Path, help="the competition folder made by setup")
    choose.add_argument("--team", required=True, help="team name")
    choose.add_argument("ids", nargs="*", type=int, help="submission numbers (as printed by score)")
    choose.add_argument("--clear", action="store_true", help="forget the choice: count the best public ones")
    choose.set_defaults(func=_run_choose)
