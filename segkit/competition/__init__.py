"""The class competition (session 9): a secret test set, safe submission checks, scoring, the board, the
leaderboard, and the web service that runs it in a classroom.

    prepare.py     prepare_competition: a test set drawn from a secret seed (or held-back labels), the truth,
                   the board, the student pack
    truth.py       TestSet: the hidden masks and their public/private split
    rules.py       Rules: limits and options, stored as competition.json in the board folder
    submission.py  check_submission: reads a student's zip safely, reports every problem in one pass
    scoring.py     score_submission / submit: public and private confusion matrices (segkit.metrics)
    checkpoints.py score_checkpoint: a model submission, run by the server on the student pack's images
    board.py       Board: the SQLite board, atomic writes under a file lock, daily limits, final choices,
                   the upload inbox
    teams.py       Teams: registered names (NFKC, ASCII, unique ignoring case) and hashed tokens
    ranking.py     live and final standings, the Ladder (Blum & Hardt 2015)
    render.py      leaderboard as text, Markdown and a self-contained HTML page
    uploads.py     an upload streamed to disk under a cap, then its multipart field taken out
    workers.py     WorkerPool: scoring in worker processes under wall-clock and memory limits
    service.py     the Starlette application: pages (web/templates, web/static) and the HTTP API
    client.py      what `segkit submit` sends (standard library only)

The commands are `segkit competition setup|teams|serve|score|leaderboard|choose` and `segkit submit`
(segkit/cli/competition.py); competition/README.md has the rules and a walkthrough of a whole round.
"""
