"""Teams and their tokens: who may submit as whom, and who is the instructor.

The instructor registers each team (`segkit competition teams add COMP NAME`), which prints the team's
token once.  A token is 32 random bytes from the operating system (`secrets.token_urlsafe`); the board keeps
only its SHA-256 (table `tokens` of board.sqlite), so a copy of the board gives nobody a token.  A token is
checked by hashing it and comparing the hash with every stored one with `hmac.compare_digest` (constant
time, and no early exit over the list), so the time an answer takes says nothing about how close a guess was.

Team names are what a projector shows, so they must not be able to pretend to be another team or to be
empty: a name is normalised with Unicode NFKC (fullwidth `ｏｗｌｓ` and mathematical letters become plain
`owls`), then must be 1-40 characters of ASCII letters, digits, space, '-', '_' and '.' (which leaves out
Cyrillic and Greek look-alikes, and invisible characters such as U+3164), with no space at either end nor two
in a row, and unique ignoring case (`OWLS` and `owls` are one team).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import string
import unicodedata

from segkit.competition.board import Board, BoardError

MAX_TEAM_NAME = 40
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + " -_.")


class TeamError(ValueError):
    """A team name that is not allowed, or a team that does not exist (the message says which)."""


def team_name_problem(name: str) -> str | None:
    """Why `name` (already NFKC-normalised) is not a usable team name, or None."""
    if not 1 <= len(name) <= MAX_TEAM_NAME:
        return f"team name must have 1 to {MAX_TEAM_NAME} characters, got {len(name)}"
    bad = sorted({c for c in name if c not in NAME_CHARACTERS})
    if bad:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in bad)
        return (f"team name {name!r} has characters that are not allowed: {shown}; use ASCII letters, "
                "digits, space, '-', '_' and '.' (look-alike and invisible characters could impersonate "
                "another team)")
    if name != name.strip() or "  " in name:
        return f"team name {name!r} must not start or end with a space, nor hold two spaces in a row"
    return None


def normalise_team_name(name: str) -> str:
    """The NFKC form of `name`, checked (TeamError naming the problem)."""
    normal = unicodedata.normalize("NFKC", name)
    problem = team_name_problem(normal)
    if problem:
        raise TeamError(problem)
    return normal


def name_key(name: str) -> str:
    """What makes two names the same team: their NFKC form, case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Teams:
    """The registered teams of a board, and the instructor's token."""

    def __init__(self, board: Board):
        self.board = board

    def _rows(self) -> list[tuple[str, str | None, str]]:
        connection = self.board._connect()
        try:
            return connection.execute("SELECT role, team, sha256 FROM tokens ORDER BY rowid").fetchall()
        finally:
            connection.close()

    def names(self) -> list[str]:
        """Registered team names, in the order they were added."""
        return [team for role, team, _ in self._rows() if role == "team"]

    def find(self, name: str) -> str | None:
        """The registered spelling of the team called `name` (ignoring case and NFKC differences), or None."""
        key = name_key(name)
        return next((team for team in self.names() if name_key(team) == key), None)

    def add(self, name: str) -> tuple[str, str]:
        """Register a team; returns (its name as stored, its token).  The token is not stored: show it now."""
        name = normalise_team_name(name)
        existing = self.find(name)
        if existing is not None:
            raise TeamError(f"team {existing!r} is already registered (names are the same team ignoring "
                            "case); give its members its token, or a new one with `teams token`")
        token = new_token()
        with self.board.lock:
            connection = self.board._connect()
            try:
                connection.execute("INSERT INTO tokens (role, team, name_key, sha256) "
                                   "VALUES ('team', ?, ?, ?)", (name, name_key(name), token_hash(token)))
            except sqlite3.IntegrityError:
                raise TeamError(f"team {name!r} is already registered") from None
            finally:
                connection.close()
        return name, token

    def new_team_token(self, name: str) -> tuple[str, str]:
        """A new token for a registered team (the old one stops working); returns (team, token)."""
        team = self.find(name)
        if team is None:
            raise TeamError(f"no team {name!r}; registered: {', '.join(self.names()) or 'none'}")
        token = new_token()
        self._replace("UPDATE tokens SET sha256 = ? WHERE role = 'team' AND team = ?",
                      (token_hash(token), team))
        return team, token

    def new_instructor_token(self) -> str:
        """A new instructor token (any previous one stops working)."""
        token = new_token()
        with self.board.lock:
            connection = self.board._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("DELETE FROM tokens WHERE role = 'instructor'")
                connection.execute("INSERT INTO tokens (role, team, name_key, sha256) "
                                   "VALUES ('instructor', NULL, NULL, ?)", (token_hash(token),))
                connection.execute("COMMIT")
            finally:
                connection.close()
        return token

    def _replace(self, query: str, args: tuple) -> None:
        with self.board.lock:
            connection = self.board._connect()
            try:
                connection.execute(query, args)
            finally:
                connection.close()

    def authenticate(self, token: str | None) -> tuple[str, str | None] | None:
        """("team", name) or ("instructor", None) for a valid token, None otherwise.

        Every stored hash is compared (hmac.compare_digest), whatever matched first.
        """
        if not token:
            return None
        digest = token_hash(token)
        found = None
        for role, team, stored in self._rows():
            if hmac.compare_digest(digest, stored) and found is None:
                found = (role, team)
        return found


def require_registered(board: Board, name: str) -> str:
    """The registered spelling of team `name` when the board has registered teams; otherwise the checked NFKC
    form, merged (ignoring case) with a team already on the board.  TeamError / BoardError otherwise."""
    teams = Teams(board)
    registered = teams.names()
    if registered:
        team = teams.find(name)
        if team is None:
            raise TeamError(f"no registered team {name!r}; registered: {', '.join(registered)} "
                            "(add one with `segkit competition teams add`)")
        return team
    normal = normalise_team_name(name)
    key = name_key(normal)
    try:
        on_board = {name_key(row.team): row.team for row in board.submissions()}
    except sqlite3.Error as err:  # pragma: no cover - a broken board file
        raise BoardError(f"{board.path}: {err}") from None
    return on_board.get(key, normal)
