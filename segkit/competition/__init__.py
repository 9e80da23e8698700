"""The class competition (session 9): safe submission checks, scoring, the board and the leaderboard.

    rules.py       Rules: limits and options, stored as competition.json in the board folder
    truth.py       TestSet (hidden masks + public/private split), prepare_competition, the sample submission
    submission.py  check_submission: reads a student's zip safely, reports every problem in one pass
    scoring.py     score_submission / submit: public and private confusion matrices (segkit.metrics)
    board.py       Board: the SQLite board, atomic writes under a file lock, daily limits, final choices
    ranking.py     live and final standings, the Ladder (Blum & Hardt 2015)
    render.py      leaderboard as text, Markdown and a self-contained HTML page

The instructor's commands are `segkit competition setup|score|leaderboard|choose` (segkit/cli/competition.py);
competition/README.md has the rules and a walkthrough of a whole round.
"""
