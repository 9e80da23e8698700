"""From board rows to rankings: the live (public) leaderboard, the Ladder, and the final (private) one.

Live ranking: each team's shown public score is its best public mIoU, or, with the Ladder on, the Ladder's
score; ties go to the team that reached that score first.

The Ladder (Blum & Hardt, "The Ladder: A Reliable Leaderboard for Machine Learning Competitions", ICML 2015),
written for a score where higher is better, per team, over its accepted submissions in time order:

    R_0 = -inf
    R_t = round(s_t / η) · η    if s_t > R_{t-1} + η      (the new public score s_t beats the shown one by
    R_t = R_{t-1}               otherwise                  more than the margin η: show it, rounded to η)

A student then learns almost nothing from small random wiggles of the public score, which is what makes
"overfitting the public board" by many small submissions useless.

Final ranking: each team's counted submissions are the ones it selected, or by default its `final_count` best
public ones; its final score is the best private mIoU among them.  Rank change = public rank - private rank
(positive: the team moved up when the private split was revealed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from segkit.competition.board import Submission
from segkit.competition.rules import Rules


def ladder(scores: list[float], margin: float) -> list[float]:
    """The Ladder's shown score after each submission (scores in time order, higher is better)."""
    shown, out = -math.inf, []
    for score in scores:
        if score > shown + margin:
            shown = round(score / margin) * margin
        out.append(shown)
    return out


@dataclass
class Standing:
    """One team's line on a leaderboard."""

    team: str
    public_score: float  # shown public score (best, or the Ladder's)
    submissions: int  # accepted submissions
    last_time: str  # time of the last accepted submission
    reached_time: str  # when the shown public score was first reached (tie-break)
    public_rank: int = 0
    private_score: float | None = None  # final ranking only
    private_rank: int | None = None
    counted_ids: tuple[int, ...] = ()  # final ranking only: the submissions that counted
    score_id: int = 0  # the submission whose score is shown (live: the first to reach it; final: the best)

    @property
    def rank_change(self) -> int | None:
        return None if self.private_rank is None else self.public_rank - self.private_rank


def _score(value: float | None) -> float:
    """Scores stored as NULL (no valid pixel) rank below every number."""
    return -math.inf if value is None else value


def live_standings(submissions: list[Submission], rules: Rules) -> list[Standing]:
    """Teams ranked by shown public score (rejected submissions are ignored)."""
    by_team: dict[str, list[Submission]] = {}
    for row in submissions:
        if row.accepted:
            by_team.setdefault(row.team, []).append(row)
    standings = []
    for team, rows in by_team.items():
        rows.sort(key=lambda r: r.id)
        scores = [_score(r.public_miou) for r in rows]
        shown = ladder(scores, rules.ladder_margin) if rules.ladder_margin else _running_max(scores)
        best = shown[-1]
        reached = next(r for r, s in zip(rows, shown, strict=True) if s == best)
        standings.append(Standing(team=team, public_score=best, submissions=len(rows),
                                  last_time=rows[-1].time, reached_time=reached.time, score_id=reached.id))
    standings.sort(key=lambda s: (-s.public_score, s.reached_time, s.team))
    for rank, standing in enumerate(standings, start=1):
        standing.public_rank = rank
    return standings


def _running_max(scores: list[float]) -> list[float]:
    out, best = [], -math.inf
    for score in scores:
        best = max(best, score)
        out.append(best)
    return out


def counted_submissions(rows: list[Submission], chosen_ids: list[int] | None,
                        final_count: int) -> list[Submission]:
    """The submissions of one team that count for the final ranking: its choice, else its best public ones."""
    accepted = [r for r in rows if r.accepted]
    if chosen_ids:
        chosen = set(chosen_ids)
        return [r for r in accepted if r.id in chosen][:final_count]
    return sorted(accepted, key=lambda r: (-_score(r.public_miou), r.id))[:final_count]


def final_standings(submissions: list[Submission], selections: dict[str, list[int]],
                    rules: Rules) -> list[Standing]:
    """Teams ranked by the best private mIoU among their counted submissions, with their public rank."""
    standings = live_standings(submissions, rules)
    private_time = {}  # tie-break: when the counted private score was submitted
    for standing in standings:
        rows = [r for r in submissions if r.team == standing.team]
        counted = counted_submissions(rows, selections.get(standing.team), rules.final_count)
        best = max(counted, key=lambda r: (_score(r.private_miou), -r.id))
        standing.private_score = best.private_miou
        standing.counted_ids = tuple(r.id for r in counted)
        standing.score_id = best.id
        private_time[standing.team] = best.time
    ranked = sorted(standings, key=lambda s: (-_score(s.private_score), private_time[s.team], s.team))
    for rank, standing in enumerate(ranked, start=1):
        standing.private_rank = rank
    return ranked
