"""The competition board: one SQLite row per submission, written atomically under a file lock.

Board folder layout (made by `segkit competition setup`):

    board/competition.json   the rules (see segkit.competition.rules)
    board/board.sqlite       table `submissions` (below) and table `selections`
    board/board.lock         the file lock that serialises writers

Table `submissions`, one row per submission, accepted or rejected:

    id               1, 2, 3, ... in the order the rows were written
    team             team name
    time             UTC time of scoring, ISO 8601 ("2026-05-09T14:03:11+00:00")
    sha256           hash of the zip file's bytes
    file_name        the zip's file name as submitted
    status           "accepted" or "rejected"
    message          why it was rejected (one problem per line), or "" when accepted
    public_miou      mIoU on the public split (NULL when rejected)
    private_miou     mIoU on the private split (NULL when rejected)
    public_metrics   JSON: {"miou", "pixel_accuracy", "mean_precision", "mean_recall",
    private_metrics         "iou": [per class], "precision": [...], "recall": [...]}, NaN stored as null
    kind             "masks" (a zip of masks) or "model" (a checkpoint the server ran on the test images)
    seconds_per_image  a model's inference time per test image on the server's CPU (NULL for masks)
    problems         JSON: [{"member": name or null, "message": ...}], the reasons of `message` one by one

Table `selections` (team, submission_id): the submissions a team chose for the final ranking; a team without
rows there is ranked on its `final_count` best public submissions.

Table `uploads`, the web service's inbox (segkit.competition.service): one row per received file, written
(after the file itself is on disk) before it is scored: id, team, received (UTC), file_name, kind, path (of
the stored file), submission_id (NULL until scored).  A row still NULL when the service starts again was
received but never scored: it is scored then, so a restart loses no submission.  Recording the submission
sets submission_id in the same transaction, so a file is never recorded twice.

Table `tokens` (segkit.competition.teams): role ("team" or "instructor"), team, sha256 of the token, the
name's case-folded form (unique).  Table `state` (key, value): "closed" holds the UTC time the instructor
closed the competition.

Why this is safe with several scorers at once: a write takes the file lock, then runs one SQLite transaction
(`BEGIN IMMEDIATE` ... `COMMIT`), so a row is either fully there or not at all, and the daily-limit check and
the insert happen together.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from segkit.competition.rules import Rules, load_rules, save_rules

BOARD_FILE = "board.sqlite"
LOCK_FILE = "board.lock"
LOCK_TIMEOUT_S = 120

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    team            TEXT NOT NULL,
    time            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    message         TEXT NOT NULL,
    public_miou     REAL,
    private_miou    REAL,
    public_metrics  TEXT,
    private_metrics TEXT,
    kind            TEXT NOT NULL DEFAULT 'masks',
    seconds_per_image REAL,
    problems        TEXT
);
CREATE TABLE IF NOT EXISTS selections (
    team            TEXT NOT NULL,
    submission_id   INTEGER NOT NULL REFERENCES submissions(id),
    PRIMARY KEY (team, submission_id)
);
CREATE TABLE IF NOT EXISTS uploads (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    team            TEXT NOT NULL,
    received        TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    path            TEXT NOT NULL,
    submission_id   INTEGER REFERENCES submissions(id)
);
CREATE TABLE IF NOT EXISTS tokens (
    role            TEXT NOT NULL CHECK (role IN ('team', 'instructor')),
    team            TEXT,
    name_key        TEXT UNIQUE,
    sha256          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);
"""
COLUMNS = ("id", "team", "time", "sha256", "file_name", "status", "message", "public_miou", "private_miou",
           "public_metrics", "private_metrics", "kind", "seconds_per_image", "problems")
# Columns added after the first boards were made: an older board gets them when it is opened.
ADDED_COLUMNS = {"kind": "TEXT NOT NULL DEFAULT 'masks'", "seconds_per_image": "REAL", "problems": "TEXT"}
KINDS = ("masks", "model")


class BoardError(RuntimeError):
    """The board folder is missing, or a request to it is not allowed (the message says why)."""


@dataclass(frozen=True)
class Submission:
    """One row of the board.  Metrics dicts are as in the table description (None when rejected)."""

    id: int
    team: str
    time: str
    sha256: str
    file_name: str
    status: str
    message: str
    public_miou: float | None
    private_miou: float | None
    public_metrics: dict | None
    private_metrics: dict | None
    kind: str = "masks"
    seconds_per_image: float | None = None
    problems: list[dict] | None = None  # [{"member": str or None, "message": str}], None when accepted

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def day(self) -> str:
        return self.time[:10]


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_json(value) -> str | None:
    """JSON with NaN written as null (JSON has no NaN)."""
    if value is None:
        return None
    return json.dumps(_nan_to_none(value), allow_nan=False)


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


class Board:
    """A board folder.  `Board.create(folder, rules)` makes one; `Board(folder)` opens an existing one."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / BOARD_FILE
        if not self.path.is_file():
            raise BoardError(f"no board at {self.path}: create the competition with "
                             "`segkit competition setup`")
        self.rules: Rules = load_rules(self.folder)
        self.lock = FileLock(str(self.folder / LOCK_FILE), timeout=LOCK_TIMEOUT_S)
        self._upgrade()

    def _upgrade(self) -> None:
        """Give a board made by an older segkit the tables and columns it lacks (nothing is lost)."""
        connection = self._connect()
        try:
            present = {row[1] for row in connection.execute("PRAGMA table_info(submissions)")}
            query = "SELECT name FROM sqlite_master WHERE type = 'table'"
            tables = {row[0] for row in connection.execute(query)}
        finally:
            connection.close()
        if set(ADDED_COLUMNS) <= present and {"uploads", "tokens", "state"} <= tables:
            return
        with self.lock:
            connection = self._connect()
            try:
                connection.executescript(SCHEMA)
                present = {row[1] for row in connection.execute("PRAGMA table_info(submissions)")}
                for column, kind in ADDED_COLUMNS.items():
                    if column not in present:
                        connection.execute(f"ALTER TABLE submissions ADD COLUMN {column} {kind}")
            finally:
                connection.close()

    @classmethod
    def create(cls, folder: str | os.PathLike, rules: Rules) -> Board:
        folder = Path(folder)
        if (folder / BOARD_FILE).exists():
            raise BoardError(f"{folder / BOARD_FILE} already exists; refusing to overwrite a board")
        folder.mkdir(parents=True, exist_ok=True)
        save_rules(rules, folder)
        with sqlite3.connect(folder / BOARD_FILE) as connection:
            connection.executescript(SCHEMA)
        connection.close()
        return cls(folder)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we write BEGIN/COMMIT ourselves, so the transaction covers exactly what we say
        return sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)

    # ---- reading -------------------------------------------------------------------------------------------
    def submissions(self, team: str | None = None) -> list[Submission]:
        """All rows in the order they were written (optionally only one team's)."""
        query = f"SELECT {', '.join(COLUMNS)} FROM submissions"
        args: tuple = ()
        if team is not None:
            query, args = query + " WHERE team = ?", (team,)
        connection = self._connect()
        try:
            rows = connection.execute(query + " ORDER BY id", args).fetchall()
        finally:
            connection.close()
        return [_row_to_submission(row) for row in rows]

    def selections(self) -> dict[str, list[int]]:
        """team -> the submission ids it chose for the final ranking (teams that chose nothing are absent)."""
        connection = self._connect()
        try:
            query = "SELECT team, submission_id FROM selections ORDER BY submission_id"
            rows = connection.execute(query).fetchall()
        finally:
            connection.close()
        chosen: dict[str, list[int]] = {}
        for team, submission_id in rows:
            chosen.setdefault(team, []).append(submission_id)
        return chosen

    def closed(self) -> str | None:
        """The UTC time the instructor closed the competition, or None while it is open."""
        connection = self._connect()
        try:
            row = connection.execute("SELECT value FROM state WHERE key = 'closed'").fetchone()
        finally:
            connection.close()
        return None if row is None else row[0]

    def close(self, now: datetime | None = None) -> str:
        """Close the competition (no more submissions; the final ranking becomes public); returns the time."""
        when = (now or utc_now()).astimezone(UTC).isoformat(timespec="seconds")
        with self.lock:
            connection = self._connect()
            try:
                connection.execute("INSERT OR IGNORE INTO state (key, value) VALUES ('closed', ?)", (when,))
            finally:
                connection.close()
        return self.closed()

    def accepted_on_day(self, team: str, day: str, connection: sqlite3.Connection | None = None) -> int:
        """Accepted submissions of `team` on the UTC day `day` ("YYYY-MM-DD")."""
        own = connection is None
        connection = connection or self._connect()
        try:
            (count,) = connection.execute(
                "SELECT COUNT(*) FROM submissions "
                "WHERE team = ? AND status = 'accepted' AND substr(time, 1, 10) = ?", (team, day)).fetchone()
        finally:
            if own:
                connection.close()
        return count

    # ---- writing -------------------------------------------------------------------------------------------
    def record(self, team: str, sha256: str, file_name: str, *, problems: list | None = None,
               public: dict | None = None, private: dict | None = None, now: datetime | None = None,
               kind: str = "masks", seconds_per_image: float | None = None,
               upload_id: int | None = None) -> Submission:
        """Append one submission and return the row as stored.

        Accepted when `problems` is empty and public/private metrics are given; rejected otherwise.  problems:
        strings, or objects with `member` and `message` (segkit.competition.submission.Problem).  The daily
        limit is checked inside the same transaction as the insert, so concurrent scorings of one team can
        never get past it: a submission over the limit is stored as rejected, with the reason.
        upload_id: the `uploads` row this submission came from, marked as scored in the same transaction.
        """
        now = now or utc_now()
        time_text = now.astimezone(UTC).isoformat(timespec="seconds")
        problems = [_problem_dict(p) for p in problems or []]
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not problems and (public is None or private is None):
            raise ValueError("an accepted submission needs both public and private metrics")
        with self.lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                if not problems:
                    used = self.accepted_on_day(team, time_text[:10], connection)
                    if used >= self.rules.daily_limit:
                        problems = [_problem_dict(daily_limit_message(team, used, self.rules.daily_limit))]
                accepted = not problems
                values = (team, time_text, sha256, file_name, "accepted" if accepted else "rejected",
                          "\n".join(_problem_line(p) for p in problems),
                          _finite_or_none(public["miou"]) if accepted else None,
                          _finite_or_none(private["miou"]) if accepted else None,
                          to_json(public) if accepted else None,
                          to_json(private) if accepted else None,
                          kind, seconds_per_image, None if accepted else json.dumps(problems))
                insert = (f"INSERT INTO submissions ({', '.join(COLUMNS[1:])}) "
                          f"VALUES ({', '.join('?' * len(values))})")
                cursor = connection.execute(insert, values)
                if upload_id is not None:
                    connection.execute("UPDATE uploads SET submission_id = ? WHERE id = ?",
                                       (cursor.lastrowid, upload_id))
                row = connection.execute(f"SELECT {', '.join(COLUMNS)} FROM submissions WHERE id = ?",
                                         (cursor.lastrowid,)).fetchone()
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.close()
        return _row_to_submission(row)

    def select(self, team: str, submission_ids: list[int]) -> None:
        """Replace `team`'s choice of submissions for the final ranking (an empty list restores the default).

        Each id must be one of the team's own accepted submissions; at most rules.final_count of them.
        """
        ids = list(dict.fromkeys(submission_ids))
        if len(ids) > self.rules.final_count:
            raise BoardError(f"team {team!r} chose {len(ids)} submissions; at most {self.rules.final_count} "
                             "count for the final ranking")
        with self.lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                for submission_id in ids:
                    row = connection.execute("SELECT team, status FROM submissions WHERE id = ?",
                                             (submission_id,)).fetchone()
                    if row is None or row[0] != team:
                        raise BoardError(f"submission #{submission_id} is not one of team {team!r}'s")
                    if row[1] != "accepted":
                        raise BoardError(f"submission #{submission_id} was rejected; only accepted ones "
                                         "count")
                connection.execute("DELETE FROM selections WHERE team = ?", (team,))
                connection.executemany("INSERT INTO selections (team, submission_id) VALUES (?, ?)",
                                       [(team, i) for i in ids])
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.close()


def daily_limit_message(team: str, used: int, limit: int) -> str:
    return (f"daily limit reached: team {team!r} already has {used} accepted submissions today "
            f"(limit {limit} per UTC day); try again tomorrow")


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _problem_dict(problem) -> dict:
    """A problem as stored: {"member": the zip member at fault or None, "message": ...}."""
    if isinstance(problem, dict):
        return {"member": problem.get("member"), "message": str(problem["message"])}
    if hasattr(problem, "message"):
        return {"member": problem.member, "message": problem.message}
    return {"member": None, "message": str(problem)}


def _problem_line(problem: dict) -> str:
    """One line of the `message` column: "'member': message", or the message alone."""
    return problem["message"] if problem["member"] is None else f"{problem['member']!r}: {problem['message']}"


def _row_to_submission(row) -> Submission:
    values = dict(zip(COLUMNS, row, strict=True))
    for key in ("public_metrics", "private_metrics", "problems"):
        values[key] = json.loads(values[key]) if values[key] is not None else None
    return Submission(**values)
