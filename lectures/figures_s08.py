"""Figures of lecture 08 (experiments: noise, seeds, fair comparisons), made with segkit.

    python lectures/make_figures.py --only s08

Both figures are seeded simulations of the statistics the lecture explains; the paired comparison uses the
session's exercise reference (segkit.course.exercises.s08.paired_difference).
"""

from __future__ import annotations

import statistics

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from segkit.course.exercises.s08 import paired_difference


def best_of_k() -> Figure:
    """Selection bias: k configurations of equal true quality, each measured once with noise sigma; the
    expected score of the best-looking one grows like sigma * E[max of k standard normals]."""
    rng = np.random.default_rng(0)
    sigma, repeats = 0.01, 20000
    ks = [1, 2, 3, 5, 10, 20, 50, 100]
    simulated = [rng.normal(0.0, sigma, (repeats, k)).max(axis=1).mean() for k in ks]
    approximation = [sigma * np.sqrt(2 * np.log(k)) if k > 1 else 0.0 for k in ks]
    figure, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(ks, np.array(simulated) * 100, marker="o", label="simulated: best measured - true")
    ax.plot(ks, np.array(approximation) * 100, linestyle="--", label=r"$\sigma\sqrt{2\ln k}$ (large k)")
    ax.set_xscale("log")
    ax.set_xlabel("configurations tried (k), all equally good")
    ax.set_ylabel("optimism of the winner (mIoU points)")
    ax.set_title(r"picking the best of k noisy runs ($\sigma$ = 1 point)", fontsize=10)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def paired_seeds() -> Figure:
    """Five seeds of configurations A and B. The seed moves both scores together (shared initial weights
    and data order); B adds a small constant gain. Unpaired, the two clouds overlap; paired by seed, the
    differences are consistent and their standard error is several times smaller."""
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0.70, 0.02, 5)
    a = seed_effect + rng.normal(0, 0.003, 5)
    b = seed_effect + 0.008 + rng.normal(0, 0.003, 5)
    mean, se = paired_difference(a.tolist(), b.tolist())
    unpaired_se = np.sqrt(statistics.variance(a) / 5 + statistics.variance(b) / 5)
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].scatter(np.zeros(5), a, label="A")
    axes[0].scatter(np.ones(5), b, label="B")
    axes[0].set_xticks([0, 1], ["A", "B"])
    axes[0].set_xlim(-0.6, 1.6)
    axes[0].set_ylabel("validation mIoU")
    axes[0].set_title(f"unpaired: B - A = {b.mean() - a.mean():+.3f} ± {unpaired_se:.3f} (SE)", fontsize=9)
    for seed in range(5):
        axes[1].plot([0, 1], [a[seed], b[seed]], marker="o", color="grey")
    axes[1].set_xticks([0, 1], ["A", "B"])
    axes[1].set_xlim(-0.6, 1.6)
    axes[1].set_title(f"paired by seed: B - A = {mean:+.3f} ± {se:.3f} (SE)", fontsize=9)
    figure.suptitle("the same five seeds for both configurations", fontsize=10)
    figure.tight_layout()
    return figure


FIGURES = {
    "s08_best_of_k": best_of_k,
    "s08_paired_seeds": paired_seeds,
}
