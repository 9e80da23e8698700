"""Teams and tokens: names that cannot impersonate another team, tokens kept only as hashes, and the scorer's
command line using the registered spelling."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
from test_competition_setup import competition, make_competition

from segkit.competition.board import Board
from segkit.competition.teams import TeamError, Teams, normalise_team_name


def test_names_are_nfkc_then_plain_ascii_and_unique_ignoring_case(tmp_path, capsys):
    comp = make_competition(tmp_path)
    teams = Teams(Board(comp.board))
    assert teams.add("owls")[0] == "owls"
    # each written form, and what happens to it
    fullwidth = "ｏｗｌｓ"
    math_bold = "".join(chr(0x1D41A + ord(c) - ord("a")) for c in "owls")  # MATHEMATICAL BOLD SMALL O, ...
    assert unicodedata.name(math_bold[0]) == "MATHEMATICAL BOLD SMALL O"
    for written in ("OWLS", "Owls", fullwidth, math_bold):
        assert normalise_team_name(written).casefold() == "owls"  # NFKC folds fullwidth and maths letters
        with pytest.raises(TeamError, match="team 'owls' is already registered"):
            teams.add(written)
    for written, phrase in [("оwls", "U+043E CYRILLIC SMALL LETTER O"),  # Cyrillic о: NFKC keeps it
                            ("\u3164", "U+1160 HANGUL JUNGSEONG FILLER"),  # invisible; NFKC: U+3164 -> U+1160
                            ("owls\u200b", "U+200B ZERO WIDTH SPACE"),
                            ("<b>x</b>", "'<'"), ("", "1 to 40 characters"), ("x" * 41, "1 to 40 characters"),
                            (" owls2", "must not start or end with a space"), ("a  b", "two spaces")]:
        with pytest.raises(TeamError, match=phrase.replace("(", r"\(").replace("+", r"\+")):
            teams.add(written)
    assert teams.add("Night Owls_2.0")[0] == "Night Owls_2.0"
    assert teams.names() == ["owls", "Night Owls_2.0"]
    # the command line prints the NFKC form it registered
    assert competition("teams", "add", comp.root, "ｅａｇｌｅｓ") == 0
    assert "team 'eagles' registered (written 'ｅａｇｌｅｓ'; its NFKC form)" in capsys.readouterr().out
    assert competition("teams", "add", comp.root, "EAGLES") == 2
    assert "already registered" in capsys.readouterr().err


def test_tokens_are_stored_hashed_and_checked_against_every_hash(tmp_path, capsys):
    comp = make_competition(tmp_path)
    teams = Teams(Board(comp.board))
    _, owls = teams.add("owls")
    _, eagles = teams.add("eagles")
    instructor = teams.new_instructor_token()
    stored = (comp.board / "board.sqlite").read_bytes()
    for token in (owls, eagles, instructor):
        assert len(token) >= 43 and token.encode() not in stored  # 32 random bytes, never stored as such
        assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    assert teams.authenticate(owls) == ("team", "owls")
    assert teams.authenticate(eagles) == ("team", "eagles")
    assert teams.authenticate(instructor) == ("instructor", None)
    for wrong in (None, "", owls[:-1], owls + "x", owls.upper() if owls.upper() != owls else owls + "A"):
        assert teams.authenticate(wrong) is None
    team, renewed = teams.new_team_token("OWLS")
    assert team == "owls" and teams.authenticate(owls) is None
    assert teams.authenticate(renewed) == ("team", "owls")
    assert teams.new_instructor_token() != instructor and teams.authenticate(instructor) is None
    assert competition("teams", "list", comp.root) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["owls", "eagles"]


def test_the_scorer_uses_the_registered_spelling_so_daily_limits_are_per_team(tmp_path, capsys):
    comp = make_competition(tmp_path, daily_limit=1)
    sample = comp.root / "sample_submission.zip"
    # without registered teams: names still NFKC + ASCII, and OWLS joins an owls already on the board
    assert competition("score", sample, "--team", "owls", "--comp", comp.root) == 0
    assert competition("score", sample, "--team", "OWLS", "--comp", comp.root) == 1
    assert "daily limit reached: team 'owls'" in capsys.readouterr().out
    assert competition("score", sample, "--team", "оwls", "--comp", comp.root) == 2  # Cyrillic о
    assert "CYRILLIC SMALL LETTER O" in capsys.readouterr().err
    # with registered teams: only those, in their registered spelling
    Teams(Board(comp.board)).add("Eagles")
    assert competition("score", sample, "--team", "EAGLES", "--comp", comp.root) == 0
    assert competition("score", sample, "--team", "moles", "--comp", comp.root) == 2
    assert "no registered team 'moles'; registered: Eagles" in capsys.readouterr().err
    assert [row.team for row in Board(comp.board).submissions()] == ["owls", "owls", "Eagles"]
