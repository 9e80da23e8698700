"""Decoding a searched Auto-DeepLab: the cell from alpha, the path from beta, and the decoded network.

Cell (as in DARTS and Auto-DeepLab): with w = softmax(alpha) per edge, each block keeps

    its two strongest predecessors, strength(state) = max over operators k != none of w[edge(block, state), k]
    and on each kept edge the operator argmax_{k != none} w[edge, k]

Path: the trellis starts at stride 4 (the stem, layer 0) and moves at most one level per layer. With
p(l, t -> s) the beta transition probabilities (network.beta_probabilities), the decoded path is

    argmax over s_1..s_L of  prod_{l=0}^{L-1} p(l, s_l -> s_{l+1}),      s_0 = level 0 (stride 4)

found by the Viterbi algorithm: the best score of every node of layer l + 1 is the best over its (at most
three) predecessors of (their best score + log p), and back-pointers give the path. It costs O(L * 4 * 3)
instead of the ~3^L of trying every path.

build_decoded_model turns a searched network into the plain network it decodes to, with new random weights:
segkit.models.autodeeplab.network.AutoDeepLab, the model the paper retrains from scratch.
"""

from __future__ import annotations

import math

import torch

from segkit.models.autodeeplab.cell import blocks_for_edges
from segkit.models.autodeeplab.network import LEVEL_STRIDES, AutoDeepLab, check_path, reachable_levels
from segkit.models.autodeeplab.ops import NONE_INDEX, OP_NAMES

from .network import AutoDeepLabSearch, beta_probabilities


def as_tensor(values, name: str) -> torch.Tensor:
    """alpha or beta (a tensor, array or nested list) as a detached float64 CPU tensor."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(values, dtype=torch.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a tensor or an array of numbers: {error}") from None


def decode_cell(alpha) -> list[list[tuple[str, int]]]:
    """The genotype of the cell from alpha logits ``(E, 8)`` (see the module docstring).

    Returns one list per block of two ``(op_name, state)`` pairs, strongest first; states are numbered
    0 prev_prev, 1 prev, 2 + i block i. Ties go to the lower state / the earlier operator of OP_NAMES.
    """
    alpha = as_tensor(alpha, "alpha")
    if alpha.dim() != 2 or alpha.shape[1] != len(OP_NAMES):
        raise ValueError(f"alpha must have shape (edges, {len(OP_NAMES)}), got {tuple(alpha.shape)}")
    num_blocks = blocks_for_edges(alpha.shape[0])
    weights = alpha.softmax(dim=-1).tolist()
    genotype, edge = [], 0
    for block in range(num_blocks):
        candidates = []  # (strength, state, operator index)
        for state in range(2 + block):
            not_none = [k for k in range(len(OP_NAMES)) if k != NONE_INDEX]
            op = max(not_none, key=lambda k: weights[edge][k])  # max() keeps the first of equal values
            candidates.append((weights[edge][op], state, op))
            edge += 1
        strongest = sorted(candidates, key=lambda candidate: -candidate[0])[:2]  # stable: ties keep order
        genotype.append([(OP_NAMES[op], state) for _, state, op in strongest])
    return genotype


def decode_path(beta) -> list[int]:
    """The most probable path through the trellis, by Viterbi over beta logits ``(L, 4, 3)``.

    Returns the output strides of layers 1..L (the stem, layer 0, is always at stride 4), e.g.
    ``[4, 8, 8, 16]``. Ties go to the lower source level.
    """
    probabilities = beta_probabilities(as_tensor(beta, "beta")).tolist()  # [layer][level][direction]
    num_layers = len(probabilities)
    best = {0: 0.0}  # level -> best log-probability of reaching it at the current layer
    back_pointers = []  # per layer 1..L: level -> the source level of its best path
    for layer in range(num_layers):
        new_best, pointers = {}, {}
        for target in reachable_levels(layer + 1):
            for source in (target - 1, target, target + 1):
                if source not in best:
                    continue
                p = probabilities[layer][source][target - source + 1]
                score = best[source] + (math.log(p) if p > 0 else -math.inf)
                if target not in new_best or score > new_best[target]:
                    new_best[target], pointers[target] = score, source
        best = new_best
        back_pointers.append(pointers)
    level = max(best, key=lambda candidate: (best[candidate], -candidate))  # ties: the lower level
    levels = [level]
    for pointers in reversed(back_pointers[1:]):
        level = pointers[level]
        levels.append(level)
    return [LEVEL_STRIDES[level] for level in reversed(levels)]


def path_probability(beta, path) -> float:
    """prod_l p(l, s_l -> s_{l+1}) of a path (strides of layers 1..L) under beta logits ``(L, 4, 3)``."""
    probabilities = beta_probabilities(as_tensor(beta, "beta"))
    levels = [0] + check_path(path)
    if len(levels) - 1 != probabilities.shape[0]:
        raise ValueError(f"path has {len(levels) - 1} layers but beta has {probabilities.shape[0]}")
    product = 1.0
    for layer, (source, target) in enumerate(zip(levels[:-1], levels[1:], strict=True)):
        product *= float(probabilities[layer, source, target - source + 1])
    return product


def build_decoded_model(network: AutoDeepLabSearch, num_classes: int | None = None) -> AutoDeepLab:
    """A fresh AutoDeepLab with the genotype and path decoded from ``network``'s alpha and beta and the same
    widths (filter multiplier, stem, ASPP); new random weights, to be trained from scratch as in the paper."""
    return AutoDeepLab(
        genotype=decode_cell(network.alpha),
        path=decode_path(network.beta),
        num_classes=network.num_classes if num_classes is None else num_classes,
        filter_multiplier=network.filter_multiplier,
        stem_channels=network.stem_channels,
        aspp_channels=network.aspp_channels,
        aspp_rate_base=network.aspp_rate_base,
    )
