"""Decoding a searched Auto-DeepLab: the cell from alpha, the path from beta, and the plain decoded network.

Cell (as in DARTS and Auto-DeepLab): with w = softmax(alpha) per edge, each block keeps

    its two strongest predecessors, strength(state) = max over operators k != none of w[edge(block, state), k]
    and on each kept edge the operator argmax_{k != none} w[edge, k]

Path: the trellis starts at stride 4 (the stem, layer 0) and moves at most one level per layer. With
p(l, t -> s) the beta transition probabilities (network.beta_probabilities), the decoded path is

    argmax over s_1..s_L of  prod_{l=0}^{L-1} p(l, s_l -> s_{l+1}),      s_0 = level 0 (stride 4)

found by the Viterbi algorithm: the best score of every node of layer l + 1 is the best over its (at most
three) predecessors of (their best score + log p), and back-pointers give the path. It costs O(L * 4 * 3)
instead of the ~3^L of trying every path.

The decoded network (AutoDeepLab) is the plain model the paper retrains from scratch: the stem, one
discrete cell per layer at the level the path chose, and an ASPP at the last layer's level:

    image -> stem (stride 4) -> cell 1 at stride path[0] -> ... -> cell L at stride path[-1]
          -> ASPP (1x1 | 3x3 rate 96/stride | image pooling) -> 1x1 logits conv -> bilinear to (H, W)

Cell l reads the outputs of layers l-1 and l-2 on the path (the stem stands in for the missing ones of
cells 1 and 2), both resized bilinearly to the cell's resolution. Channels as in the search: B * F * 2^level.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .cell import DiscreteCell, blocks_for_edges, check_genotype, state_name
from .network import (
    LEVEL_STRIDES,
    NUM_LEVELS,
    AutoDeepLabSearch,
    LevelHead,
    beta_probabilities,
    check_positive,
    level_sizes,
    reachable_levels,
    resize,
    stem,
)
from .ops import NONE_INDEX, OP_NAMES


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


def check_path(path) -> list[int]:
    """The path (output strides of layers 1..L) as levels 0..3; ValueError naming the bad layer."""
    if not isinstance(path, list | tuple) or not path:
        raise ValueError(f"path must be a non-empty list of output strides {LEVEL_STRIDES}, got {path!r}")
    levels, previous = [], 0  # the stem is at level 0 (stride 4)
    for layer, stride in enumerate(path, start=1):
        if stride not in LEVEL_STRIDES or isinstance(stride, bool):
            raise ValueError(f"path layer {layer}: stride {stride!r} is not one of {LEVEL_STRIDES}")
        level = LEVEL_STRIDES.index(stride)
        if abs(level - previous) > 1:
            raise ValueError(f"path layer {layer}: stride {stride} after {LEVEL_STRIDES[previous]}; the path "
                             "moves at most one level (x2 or /2) per layer and starts at stride 4")
        levels.append(level)
        previous = level
    return levels


def format_genotype(genotype) -> str:
    """The cell as text, one line per block: ``block 0 = sep_conv_3x3(prev) + skip_connect(prev_prev)``."""
    lines = []
    for block, pairs in enumerate(check_genotype(genotype)):
        terms = " + ".join(f"{op_name}({state_name(state)})" for op_name, state in pairs)
        lines.append(f"block {block} = {terms}")
    lines.append(f"cell output = concat(block 0..{len(lines) - 1})")
    return "\n".join(lines)


def draw_path(path) -> str:
    """The path as a text grid: one row per stride, one column per layer (0 = stem), ``o`` on the path."""
    levels = [0] + check_path(path)
    lines = ["layer      " + " ".join(f"{layer:>2}" for layer in range(len(levels)))]
    for level in range(NUM_LEVELS):
        marks = " ".join(" o" if on_path == level else " ." for on_path in levels)
        lines.append(f"stride {LEVEL_STRIDES[level]:>2}  " + marks)
    return "\n".join(lines)


class AutoDeepLab(nn.Module):
    """The decoded Auto-DeepLab network (see the module docstring).

    Args:
        genotype: the cell, a list of blocks of two ``(op_name, state)`` pairs (decode_cell).
        path: output strides of layers 1..L (decode_path), e.g. ``[4, 8, 8, 16]``.
        num_classes, filter_multiplier, stem_channels, aspp_channels, aspp_rate_base: as in
            AutoDeepLabSearch.

    ``forward(x: (N, 3, H, W) float)`` returns logits ``(N, num_classes, H, W)``. Parameter names:
    ``stem.*``, ``cells.<l-1>.*``, ``head.aspp.*``, ``head.classifier.*`` (the logits conv:
    ``last_layer_prefixes``). ``output_stride`` is the coarsest stride on the path.
    """

    def __init__(self, genotype, path, num_classes: int = 21, filter_multiplier: int = 8,
                 stem_channels: int = 32, aspp_channels: int = 32, aspp_rate_base: int = 96):
        super().__init__()
        for name, value in [("num_classes", num_classes), ("filter_multiplier", filter_multiplier),
                            ("stem_channels", stem_channels), ("aspp_channels", aspp_channels),
                            ("aspp_rate_base", aspp_rate_base)]:
            check_positive(name, value)
        self.genotype = check_genotype(genotype)
        self.levels = check_path(path)
        self.path = [LEVEL_STRIDES[level] for level in self.levels]
        self.num_classes = num_classes
        num_blocks = len(self.genotype)

        self.stem = stem(stem_channels)
        channels = [stem_channels]  # output channels of layer 0 (stem), 1, 2, ...
        self.cells = nn.ModuleList()
        for layer, level in enumerate(self.levels, start=1):
            width = filter_multiplier * 2**level
            prev, prev_prev = channels[layer - 1], channels[max(layer - 2, 0)]
            self.cells.append(DiscreteCell(prev_prev, prev, width, self.genotype))
            channels.append(num_blocks * width)
        self.head = LevelHead(channels[-1], self.levels[-1], num_classes, aspp_channels, aspp_rate_base)
        self.last_layer_prefixes = ("head.classifier.",)
        self.output_stride = max(self.path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AutoDeepLab expects images (N, 3, H, W), got shape {tuple(x.shape)}")
        outputs = [self.stem(x)]
        sizes = level_sizes(tuple(outputs[0].shape[-2:]))
        for layer, (level, cell) in enumerate(zip(self.levels, self.cells, strict=True), start=1):
            prev = resize(outputs[layer - 1], sizes[level])
            prev_prev = resize(outputs[max(layer - 2, 0)], sizes[level])
            outputs.append(cell(prev_prev, prev))
        return resize(self.head(outputs[-1]), tuple(x.shape[-2:]))


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
