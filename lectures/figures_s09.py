"""Figures of lecture 09 (the competition: public/private split, leaderboard overfitting, the Ladder), made
with segkit.

    python lectures/make_figures.py --only s09

Seeded simulations; the Ladder is segkit's own (segkit.competition.ranking.ladder).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from segkit.competition.ranking import ladder


def winners_optimism() -> Figure:
    """25 teams x 8 submissions of equal true quality 0.60, per-image score spread 0.15: the best public
    score against the public part's size, and the private score of the same submissions."""
    rng = np.random.default_rng(0)
    teams, tries, quality, spread = 25, 8, 0.60, 0.15
    sizes = [25, 50, 100, 200, 400, 800]
    winner_public, winner_private = [], []
    for n in sizes:
        publics, privates = [], []
        for _ in range(40):  # repeated competitions
            public = rng.normal(quality, spread, (teams, tries, n)).mean(axis=-1)
            private = rng.normal(quality, spread, (teams, tries, n)).mean(axis=-1)
            chosen = public.argmax(axis=1)
            team_public = public[np.arange(teams), chosen]
            team_private = private[np.arange(teams), chosen]
            winner = team_public.argmax()
            publics.append(team_public[winner])
            privates.append(team_private[winner])
        winner_public.append(np.mean(publics))
        winner_private.append(np.mean(privates))
    figure, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(sizes, winner_public, marker="o", label="public score of the leader")
    ax.plot(sizes, winner_private, marker="s", label="private score of the same submission")
    ax.axhline(quality, color="grey", linestyle=":", label="true quality of every submission")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("images in each part (public = private size)")
    ax.set_ylabel("score")
    ax.set_title("25 teams x 8 equally good submissions", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def ladder_steps() -> Figure:
    """One team's 30 public scores (slow real progress plus noise), the best-so-far a plain leaderboard
    shows, and the Ladder's shown score with margin 0.01."""
    rng = np.random.default_rng(1)
    scores = (0.50 + 0.002 * np.arange(30) + rng.normal(0, 0.008, 30)).tolist()
    best = np.maximum.accumulate(scores)
    shown = ladder(scores, 0.01)
    figure, ax = plt.subplots(figsize=(6, 3.4))
    submissions = np.arange(1, 31)
    ax.plot(submissions, scores, marker=".", linestyle="none", color="grey", label="public score")
    ax.step(submissions, best, where="post", label="best so far (plain board)")
    ax.step(submissions, shown, where="post", label="Ladder, margin 0.01")
    ax.set_xlabel("submission")
    ax.set_ylabel("public mIoU")
    ax.set_title("what the board shows a team", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def boosting_attack() -> Figure:
    """Blum & Hardt's boosting attack with random guesses on 200 public + 200 private binary items: the
    public and private score of the majority vote of the kept guesses, against the number of guesses."""
    rng = np.random.default_rng(2)
    n_images, counts = 400, [10, 25, 50, 100, 200, 400]
    curves = {("exact", "public"): [], ("exact", "private"): [], ("ladder", "public"): [],
              ("ladder", "private"): []}
    for count in counts:
        sums = {key: 0.0 for key in curves}
        repeats = 20
        for _ in range(repeats):
            truth = rng.integers(0, 2, n_images)
            public = np.arange(n_images) < n_images // 2
            guesses = rng.integers(0, 2, (count, n_images))
            scores = (guesses[:, public] == truth[public]).mean(axis=1)
            shown = ladder(scores.tolist(), 0.01)
            keeps = {"exact": scores > 0.5,
                     "ladder": np.array([True] + [shown[i] > shown[i - 1] for i in range(1, count)])}
            for board, keep in keeps.items():
                final = (guesses[keep].mean(axis=0) > 0.5).astype(int)
                sums[(board, "public")] += (final[public] == truth[public]).mean() / repeats
                sums[(board, "private")] += (final[~public] == truth[~public]).mean() / repeats
        for key in curves:
            curves[key].append(sums[key])
    figure, ax = plt.subplots(figsize=(5.8, 3.5))
    styles = {"public": "-", "private": ":"}
    labels = {"exact": "exact public scores", "ladder": "Ladder (margin 0.01)"}
    for (board, part), values in curves.items():
        colour = "tab:red" if board == "exact" else "tab:blue"
        ax.plot(counts, values, linestyle=styles[part], marker="o", markersize=3, color=colour,
                label=f"{labels[board]}: {part}")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("random submissions")
    ax.set_ylabel("accuracy of the attack's final submission")
    ax.set_title("climbing the board with no skill (Blum & Hardt 2015)", fontsize=10)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


FIGURES = {
    "s09_winners_optimism": winners_optimism,
    "s09_ladder": ladder_steps,
    "s09_boosting_attack": boosting_attack,
}
