"""Figures of lecture 08b (architecture search), made with segkit.

    python lectures/make_figures.py --only s08b

successive_halving: seeded simulated learning curves, stopped by the session's exercise reference
(segkit.course.exercises.s08b.successive_halving, checked against Optuna's pruner in the tests).
autodeeplab_trellis: the network-level search space of Auto-DeepLab and the path segkit's decode_path
(Viterbi) reads from a seeded random beta.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from segkit.course.exercises.s08b import successive_halving
from segkit.search.autodeeplab import LEVEL_STRIDES, decode_path, path_probability, search_space_size


def successive_halving_curves() -> Figure:
    """27 trials, grace 1 epoch, reduction factor 3, 27 epochs: rungs at epochs 1, 3 and 9. Each trial's
    (simulated) val mIoU follows final * (1 - exp(-epoch / tau)) + noise, so some trials start slowly and
    end high: those are the ones early stopping can wrongly drop (here the one that would end best).
    Dotted: the rest of the stopped trials' curves, which a real search never sees."""
    rng = np.random.default_rng(2)
    trials, max_epochs, grace, factor = 27, 27, 1, 3
    finals, taus = rng.uniform(0.35, 0.75, trials), rng.uniform(0.5, 8.0, trials)
    epochs = np.arange(1, max_epochs + 1)
    curves = [final * (1 - np.exp(-epochs / tau)) + rng.normal(0, 0.008, max_epochs)
              for final, tau in zip(finals, taus, strict=True)]
    trained = successive_halving([c.tolist() for c in curves], grace, factor, max_epochs)
    best_final = int(np.argmax([c[-1] for c in curves]))

    figure, ax = plt.subplots(figsize=(7.5, 4.0))
    rung = grace
    while rung < max_epochs:
        ax.axvline(rung, color="grey", linestyle="--", linewidth=0.8)
        ax.text(rung, 0.02, f" rung {rung}", fontsize=8, color="grey")
        rung *= factor
    for index, (curve, stop) in enumerate(zip(curves, trained, strict=True)):
        complete = stop == max_epochs
        colour = "tab:blue" if complete else "tab:red"
        ax.plot(epochs[:stop], curve[:stop], color=colour, linewidth=1.6 if complete else 1.0,
                marker=None if complete else "x", markevery=[stop - 1], alpha=0.9)
        if not complete:  # what it would have done: never known in a real search
            ax.plot(epochs[stop - 1:], curve[stop - 1:], color="tab:red", linestyle=":", linewidth=0.8,
                    alpha=0.9 if index == best_final else 0.25)
        if index == best_final and not complete:
            ax.annotate(f"stopped at epoch {stop}, yet the best after {max_epochs}", (epochs[-1], curve[-1]),
                        fontsize=8, xytext=(-250, 14), textcoords="offset points",
                        arrowprops={"arrowstyle": "->"})
    spent = sum(trained)
    ax.set_xscale("log", base=3)
    ax.set_xticks([1, 3, 9, 27], ["1", "3", "9", "27"])
    ax.set_xlabel("epoch (log scale)")
    ax.set_ylabel("validation mIoU (simulated)")
    ax.set_ylim(0, 0.85)
    complete = sum(stop == max_epochs for stop in trained)
    ax.set_title(f"successive halving: {trials} trials, {complete} trained to the end, {spent} epochs "
                 f"instead of {trials * max_epochs}", fontsize=10)
    ax.plot([], [], color="tab:blue", label="trained to the end")
    ax.plot([], [], color="tab:red", marker="x", label="stopped at a rung")
    ax.plot([], [], color="tab:red", linestyle=":", label="what a stopped trial would have reached")
    ax.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def autodeeplab_trellis() -> Figure:
    """Auto-DeepLab's network level: L = 12 layers, strides 4..32, a move of at most one level per layer;
    in grey every allowed move, in black the most probable path under a random beta (Viterbi)."""
    layers = 12
    beta = torch.randn(layers, 4, 3, generator=torch.Generator().manual_seed(3)) * 1.5
    path = decode_path(beta)
    levels = [0] + [LEVEL_STRIDES.index(stride) for stride in path]
    figure, ax = plt.subplots(figsize=(7.5, 3.2))
    for layer in range(layers):
        for level in range(min(layer, 3) + 1):
            for target in (level - 1, level, level + 1):
                if 0 <= target <= min(layer + 1, 3):
                    ax.plot([layer, layer + 1], [level, target], color="lightgrey", linewidth=0.8, zorder=1)
    for layer in range(layers + 1):
        reachable = range(min(layer, 3) + 1)
        ax.scatter([layer] * len(reachable), list(reachable), color="grey", s=14, zorder=2)
    ax.plot(range(layers + 1), levels, color="black", linewidth=2.2, marker="o", zorder=3)
    ax.set_yticks(range(4), [f"stride {s}" for s in LEVEL_STRIDES])
    ax.invert_yaxis()
    ax.set_xticks(range(layers + 1), ["stem"] + [str(layer) for layer in range(1, layers + 1)])
    ax.set_xlabel("layer")
    paths = search_space_size(num_blocks=5, num_layers=layers)["paths"]
    ax.set_title(f"Auto-DeepLab's network level: {paths:,} paths of {layers} layers; in black the Viterbi "
                 f"path of a random beta (probability {path_probability(beta, path):.1e})", fontsize=10)
    figure.tight_layout()
    return figure


FIGURES = {
    "s08b_successive_halving": successive_halving_curves,
    "s08b_autodeeplab_trellis": autodeeplab_trellis,
}
