"""Session 8b exercises: architecture search by hand.

    count_architectures    the size of an EncDec search space (an "O" layer ignores its dilation)
    successive_halving     the epoch at which asynchronous successive halving stops each trial
    viterbi_path           the most probable Auto-DeepLab path through the trellis, by dynamic programming
    dp_nas_output_shape    read a DP-NAS architecture string and follow the shape of the feature map

Only math, re and torch are imported here: segkit.course.exercises is imported by every notebook.
"""

from __future__ import annotations

import math
import numbers
import re

import torch

from segkit.course.exercises.checker import Exercise, allclose, register

# ------------------------------------------------------------------------------------ search-space size


def count_architectures(layers) -> int:
    """Number of distinct networks an EncDec search space describes.

    layers: one (ops, dilations) pair per searched layer, e.g. (["H", "V", "C", "O"], range(1, 8)): ops a
    list of op letters, dilations a list or range of integers. A layer chooses an op and, for C (3x3),
    H (1x3) and V (3x1), a dilation; O (1x1) has no dilation to choose, so it counts once:

        choices(layer) = sum over its ops of (1 if op == "O" else len(dilations))
        size = product over the layers of choices(layer)          (1 for no layer)

    (["H", "V", "C", "O"], range(1, 8)) has 3 * 7 + 1 = 22 choices; 11 such layers 22**11.
    Returns an exact Python int (float arithmetic loses digits beyond 2**53).
    """
    total = 1
    for ops, dilations in layers:
        total *= sum(1 if op == "O" else len(dilations) for op in ops)
    return total


def _exact_integer(got, expected) -> str | None:
    if not isinstance(got, numbers.Integral) or isinstance(got, bool):
        return f"expected an exact integer (a Python int), got {type(got).__name__} {got!r}"
    return None if int(got) == expected else f"expected {expected:,}, got {int(got):,}"


def _count_cases(rng) -> list[tuple[str, tuple]]:
    searched = (["H", "V", "C", "O"], range(1, 8))
    shipped = ([(["C", "H", "V", "O"], range(1, 4))] * 3 + [(["C", "H", "V", "O"], range(1, 5))] * 2
               + [(["C", "H", "V", "O"], range(1, 4))] * 2 + [(["C", "H", "V", "O"], range(1, 3))])
    ops = ["C", "H", "V", "O"]
    random_layers = []
    for _ in range(5):
        chosen = [op for op in ops if rng.random() < 0.6] or ["O"]
        start = int(rng.integers(1, 3))
        random_layers.append((chosen, list(range(start, start + int(rng.integers(1, 5))))))
    return [
        ("the U-Net-shaped example: 11 layers of (['H','V','C','O'], range(1, 8))", ([searched] * 11,)),
        ("no 'O' among the choices", ([(["C", "H"], range(1, 4))] * 3,)),
        ("only 'O' layers: the dilation never matters", ([(["O"], range(1, 5))] * 4,)),
        ("a fixed layer among searched ones", ([(["C", "O"], [1, 2, 4]), (["C"], [1]),
                                                (["H", "V", "O"], range(1, 3))],)),
        ("no searched layer at all", ([],)),
        ("the layers of the shipped search_encdec_shapes.yaml", (shipped,)),
        ("5 random layers", (random_layers,)),
    ]


register(Exercise(
    name="count_architectures",
    description="the number of distinct architectures of an EncDec search space",
    reference=count_architectures,
    make_cases=_count_cases,
    compare=_exact_integer,
    hint="multiply, over the layers, the number of choices of each layer: every op but 'O' brings "
         "len(dilations) networks, 'O' (1x1) only one — (['H','V','C','O'], range(1, 8)) gives "
         "3 * 7 + 1 = 22, not 4 * 7",
))


# ----------------------------------------------------------------------------------- successive halving


def successive_halving(curves, grace: int, factor: int, max_epochs: int) -> list[int]:
    """Epochs trained by each trial of an asynchronous successive-halving search (ASHA, as Optuna does it).

    curves: one list per trial, in the order the trials run (one worker: each ends before the next
        starts); curves[i][e - 1] is the val mIoU trial i has after epoch e (e = 1..max_epochs).
    Rungs at the epochs r_k = grace * factor**k that are < max_epochs. When a trial reaches a rung r, its
    value there is recorded with every value recorded at r so far (by earlier trials, promoted or pruned,
    and this one), and with n values recorded it goes on only if

        value >= the k-th largest recorded value,   k = max(n // factor, 1)

    (the top 1/factor; while fewer than `factor` values exist, it must be the best so far; a tie goes on).
    A trial stopped at rung r has trained r epochs; one never stopped trains max_epochs.
    """
    recorded: dict[int, list[float]] = {}
    trained = []
    for curve in curves:
        epochs, rung = max_epochs, grace
        while rung < max_epochs:
            value = curve[rung - 1]
            recorded.setdefault(rung, []).append(value)
            ranked = sorted(recorded[rung], reverse=True)
            keep = max(len(ranked) // factor, 1)
            if value < ranked[keep - 1]:
                epochs = rung
                break
            rung *= factor
        trained.append(epochs)
    return trained


def _learning_curves(rng, trials: int, epochs: int) -> list[list[float]]:
    """Noisy saturating curves a * (1 - exp(-e / tau)), rounded to 3 decimals (ties are possible)."""
    curves = []
    for _ in range(trials):
        final, tau = rng.uniform(0.2, 0.8), rng.uniform(0.5, 6.0)
        values = [final * (1 - math.exp(-e / tau)) + rng.normal(0, 0.01) for e in range(1, epochs + 1)]
        curves.append([round(float(v), 3) for v in values])
    return curves


def _halving_cases(rng) -> list[tuple[str, tuple]]:
    rising = [0.5, 0.6, 0.7, 0.8]
    return [
        ("9 trials, grace 1, factor 3, 9 epochs (rungs at 1 and 3)", (_learning_curves(rng, 9, 9), 1, 3, 9)),
        ("a tie at a rung goes on", ([rising, list(rising), [0.4, 0.5, 0.6, 0.7]], 1, 2, 4)),
        ("a weak first trial goes on: nothing to compare it with yet",
         ([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8], [0.6, 0.7, 0.8, 0.9]], 1, 2, 4)),
        ("pruned trials' values still count at their rung",
         ([[0.9] * 4, [0.1] * 4, [0.5] * 4, [0.6] * 4], 1, 2, 4)),
        ("12 trials, grace 2, factor 2, 16 epochs (rungs at 2, 4 and 8)",
         (_learning_curves(rng, 12, 16), 2, 2, 16)),
        ("grace = max_epochs: no rung, every trial runs to the end", (_learning_curves(rng, 3, 3), 3, 3, 3)),
    ]


register(Exercise(
    name="successive_halving",
    description="epochs trained by each trial under asynchronous successive halving",
    reference=successive_halving,
    make_cases=_halving_cases,
    hint="rungs grace * factor**k below max_epochs; judge each trial as it arrives against the values "
         "recorded at that rung so far (earlier trials, pruned ones too, and itself), keep it when "
         "value >= the max(n // factor, 1)-th largest",
))


# ------------------------------------------------------------------------------------- Viterbi decoding

STRIDES = (4, 8, 16, 32)


def viterbi_path(p) -> list[int]:
    """The most probable path through Auto-DeepLab's trellis, as the output strides of layers 1..L.

    p: (L, 4, 3) float tensor; p[l, s, d] is the probability that a path at level s (stride 4 * 2**s) after
    layer l (l = 0: the stem, always at level 0) moves to level s - 1 (d = 0), s (d = 1) or s + 1 (d = 2)
    at layer l + 1. Impossible moves (above stride 4, below stride 32) have probability 0.

    The path maximises prod_l p[l, s_l, s_{l+1} - s_l + 1] with s_0 = 0. Viterbi: keep, for every level, the
    best log-probability of reaching it at the current layer and the path that does; one layer further, a
    level's best is the best of its (at most three) predecessors plus the log-probability of the move.
    O(L * 4 * 3) work instead of the 3**L paths of a brute force.
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    best = {0: (0.0, [])}  # level -> (log-probability of the best path reaching it, its levels)
    for layer in range(p.shape[0]):
        reached: dict[int, tuple[float, list[int]]] = {}
        for source, (score, path) in sorted(best.items()):
            for move, target in enumerate((source - 1, source, source + 1)):
                probability = float(p[layer, source, move])
                if not 0 <= target < len(STRIDES) or probability <= 0:
                    continue
                candidate = score + math.log(probability)
                if target not in reached or candidate > reached[target][0]:
                    reached[target] = (candidate, path + [target])
        best = reached
    _, levels = max(best.values(), key=lambda item: item[0])
    return [STRIDES[level] for level in levels]


def transition_probabilities(beta: torch.Tensor) -> torch.Tensor:
    """(L, 4, 3) probabilities from logits: a softmax over each level's possible moves (0 elsewhere)."""
    possible = torch.ones(len(STRIDES), 3, dtype=torch.bool)
    possible[0, 0] = possible[-1, 2] = False
    return beta.double().masked_fill(~possible, float("-inf")).softmax(dim=-1)


def _greedy_trap() -> torch.Tensor:
    """L = 2: staying at stride 4 looks best after one layer (0.6), moving to 8 is better over two."""
    p = transition_probabilities(torch.zeros(2, 4, 3))
    p[0, 0] = torch.tensor([0.0, 0.6, 0.4], dtype=torch.float64)
    p[1, 0] = torch.tensor([0.0, 0.55, 0.45], dtype=torch.float64)
    p[1, 1] = torch.tensor([0.005, 0.99, 0.005], dtype=torch.float64)
    return p


def _viterbi_cases(rng) -> list[tuple[str, tuple]]:
    def random_p(layers: int, scale: float) -> torch.Tensor:
        return transition_probabilities(torch.from_numpy(rng.normal(0, scale, (layers, 4, 3))))

    dive = torch.tensor([-2.0, 0.0, 2.0]).repeat(6, 4, 1)  # every level prefers to go down (coarser)
    return [
        ("one layer", (random_p(1, 1.0),)),
        ("3 layers (13 possible paths)", (random_p(3, 1.0),)),
        ("the greedy choice is wrong here", (_greedy_trap(),)),
        ("12 layers, as in the paper", (random_p(12, 1.5),)),
        ("a path that wants to go below stride 32", (transition_probabilities(dive),)),
        ("8 layers, nearly uniform probabilities", (random_p(8, 0.3),)),
    ]


register(Exercise(
    name="viterbi_path",
    description="the most probable path through the Auto-DeepLab trellis (strides of layers 1..L)",
    reference=viterbi_path,
    make_cases=_viterbi_cases,
    hint="start at level 0 (stride 4) with log-probability 0; for each layer, every level's best score is "
         "the max over its predecessors (level - 1, level, level + 1) of their score + log p[layer, source, "
         "move]; keep the path with it, and return the strides 4 * 2**level of layers 1..L (not the stem)",
))


# ------------------------------------------------------------------------------ DP-NAS architecture strings

LAYER_PATTERN = re.compile(r"([CP])\s*\(([^)]*)\)")


def dp_nas_output_shape(arch: str, image_size: int) -> tuple[int, int]:
    """(channels, size) of the feature map a DP-NAS architecture string makes of a square image.

    arch: e.g. "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]", any spacing. Layers, for an n x n input:

        C(features,kernel,stride,pad,skip)  channels: features   n' = floor((n + 2 pad - kernel) / stride) + 1
        P(size,stride)                      channels: unchanged  n' = floor((n - size) / stride) + 1

    (skip adds a residual connection and changes no shape.) An RGB image has 3 channels; "[]" keeps
    (3, image_size).
    """
    channels, size = 3, image_size
    for kind, fields in LAYER_PATTERN.findall(arch):
        numbers_ = [int(field) for field in fields.split(",")]
        if kind == "C":
            features, kernel, stride, pad, _skip = numbers_
            channels, size = features, (size + 2 * pad - kernel) // stride + 1
        else:
            window, stride = numbers_
            size = (size - window) // stride + 1
    return channels, size


def _shape_cases(rng) -> list[tuple[str, tuple]]:
    features = int(rng.choice([8, 16, 32]))
    return [
        ("no layer at all", ("[]", 64)),
        ("conv, pool, residual conv", ("[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]", 64)),
        ("a strided conv and a 3x3 pool on an odd size", (f"[C({features},5,2,0,0), P(3,3)]", 65)),
        ("spaces inside the string", ("[ C(8, 7, 2, 3, 0) , P(4,4) ]", 50)),
        ("pooling only, sizes rounded down", ("[P(2,2), P(2,2)]", 33)),
        ("1x1 conv then a residual 3x3", ("[C(64,1,1,0,0), C(16,3,1,1,1)]", 20)),
        ("overlapping pooling windows", ("[C(4,3,1,0,0), P(3,2), P(3,2)]", 32)),
        ("a random image size", ("[C(16,3,2,1,0), P(2,2)]", int(rng.integers(16, 200)))),
    ]


register(Exercise(
    name="dp_nas_output_shape",
    description="(channels, size) after the layers of a DP-NAS architecture string",
    reference=dp_nas_output_shape,
    make_cases=_shape_cases,
    compare=allclose,
    hint="find every C(...) and P(...) (e.g. re.findall(r'([CP])\\s*\\(([^)]*)\\)', arch)); a conv sets the "
         "channels to its features and the size to (n + 2 pad - kernel) // stride + 1, a pool keeps the "
         "channels and gives (n - size) // stride + 1 — floors, not ceilings",
))
