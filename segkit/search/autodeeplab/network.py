"""The Auto-DeepLab search network: a trellis of L layers over output strides 4, 8, 16 and 32.

    image (N, 3, H, W)
      -> stem: 3x3 conv stride 2 -> 3x3 conv -> 3x3 conv stride 2 (each + BN + ReLU)     node (0, level 0)
      -> layers 1..L: a node (l, s) at every level s the trellis can reach (s <= l, at most 3)
      -> per level of layer L: ASPP -> 1x1 logits conv -> bilinear upsampling to (H, W); summed

Levels s = 0, 1, 2, 3 are the output strides 4, 8, 16, 32. Starting at stride 4 and moving at most one level
per layer, layer l can reach the levels 0..min(l, 3). Node (l, s) sums one cell per incoming transition,
weighted by beta (the network-level relaxation of Auto-DeepLab):

    H(l, s) = sum over t in {s-1, s, s+1} reachable at layer l-1 of
              p(l-1, t -> s) * Cell_{l,s,t}( prev_prev = H(l-2, s), prev = resize(H(l-1, t)); softmax(alpha) )

    p(l, t -> .) = softmax over the outgoing choices of node (l, t): up (to level t-1, stride / 2), same,
                   down (to level t+1, stride x 2); "up" is impossible at level 0 and "down" at level 3.

So beta is one vector of 3 logits per node, ``beta: (L, 4, 3)`` for the source layers 0..L-1, in the order
(up, same, down); entries of nodes the trellis cannot reach (level > layer) are never used. alpha
``(E, 8)`` is one set of operator logits shared by all cells (see cell.py). Both start at 1e-3 * N(0, 1)
as in DARTS, so every choice starts out nearly equal.

Choices of this small version (documented where the paper is silent or too big for a CPU):
- prev is resized to the cell's resolution by bilinear interpolation (halving an even size is exactly a 2x2
  average pool); each cell then maps both inputs with ReLU -> 1x1 conv -> BN to its width.
- prev_prev is H(l-2, s), the same level two layers back. When the trellis has no such node (layer 1, or
  a level first reached at layer l-1 or l), the cell's resized prev is used in its place.
- Channels: with filter multiplier F, a cell at level s has block width C_s = F * 2^s and outputs B * C_s
  channels (the paper: F = 8, B = 5, so 40 channels at stride 4 and 320 at stride 32). The stem outputs
  ``stem_channels``.
- Each (layer, level, source level) has its own cell weights (other implementations share one set of
  operator weights per node); all cells share alpha.
- ASPP per level: segkit.models.deeplabv3.ASPP with a single atrous rate, 96 / stride as in the paper
  (24, 12, 6, 3): a 1x1 conv, one 3x3 atrous conv and image pooling, ``aspp_channels`` wide, projected,
  then a 1x1 conv to the classes. The paper's search (F = 8, B = 5, L = 12, 321 x 321 crops) took about
  3 P100 GPU-days.

BatchNorm in training mode needs more than one value per channel: at 32 x 32 inputs the stride-32 level
is 1 x 1, so train with batches of at least 2 images.
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.models.autodeeplab.cell import num_edges
from segkit.models.autodeeplab.network import (
    LEVEL_STRIDES,
    NUM_LEVELS,
    LevelHead,
    check_positive,
    level_sizes,
    reachable_levels,
    resize,
    stem,
)
from segkit.models.autodeeplab.ops import OP_NAMES

from .cell import SearchCell

DIRECTIONS = ("up", "same", "down")  # beta's last axis: to level s-1, s, s+1


def valid_directions() -> torch.Tensor:
    """``(4, 3)`` bool: which of (up, same, down) exist at each level (no up at stride 4, no down at 32)."""
    valid = torch.ones(NUM_LEVELS, len(DIRECTIONS), dtype=torch.bool)
    valid[0, 0] = False
    valid[NUM_LEVELS - 1, 2] = False
    return valid


def beta_probabilities(beta: torch.Tensor) -> torch.Tensor:
    """Transition probabilities ``(L, 4, 3)`` from beta logits ``(L, 4, 3)``: softmax over each node's valid
    outgoing choices (up, same, down); impossible choices get probability 0."""
    if beta.dim() != 3 or beta.shape[1:] != (NUM_LEVELS, len(DIRECTIONS)):
        expected = f"(L, {NUM_LEVELS}, {len(DIRECTIONS)})"
        raise ValueError(f"beta must have shape {expected}, got {tuple(beta.shape)}")
    valid = valid_directions().to(beta.device)
    return beta.masked_fill(~valid, float("-inf")).softmax(dim=-1)


class AutoDeepLabSearch(nn.Module):
    """The relaxed Auto-DeepLab network (see the module docstring).

    Args:
        num_classes: output channels.
        num_layers: L (paper 12).
        num_blocks: B, blocks per cell (paper 5).
        filter_multiplier: F; block width F * 2^level (paper 8).
        stem_channels: channels of the stem output.
        aspp_channels: width of each level's ASPP.
        aspp_rate_base: ASPP atrous rate = aspp_rate_base / stride (paper 96).

    ``forward(x: (N, 3, H, W) float)`` returns logits ``(N, num_classes, H, W)``.
    Architecture parameters: ``alpha (E, 8)`` and ``beta (L, 4, 3)`` (``arch_parameters()``); every other
    parameter is a weight (``weight_parameters()``). ``cell(layer, level, source)`` is the cell of node
    (layer, level) fed from level ``source`` of layer - 1; ``heads[level]`` is a LevelHead.
    """

    def __init__(self, num_classes: int = 21, num_layers: int = 12, num_blocks: int = 5,
                 filter_multiplier: int = 8, stem_channels: int = 32, aspp_channels: int = 32,
                 aspp_rate_base: int = 96):
        super().__init__()
        for name, value in [("num_classes", num_classes), ("num_layers", num_layers),
                            ("num_blocks", num_blocks), ("filter_multiplier", filter_multiplier),
                            ("stem_channels", stem_channels), ("aspp_channels", aspp_channels),
                            ("aspp_rate_base", aspp_rate_base)]:
            check_positive(name, value)
        self.num_classes, self.num_layers, self.num_blocks = num_classes, num_layers, num_blocks
        self.filter_multiplier, self.stem_channels = filter_multiplier, stem_channels
        self.aspp_channels, self.aspp_rate_base = aspp_channels, aspp_rate_base

        self.alpha = nn.Parameter(1e-3 * torch.randn(num_edges(num_blocks), len(OP_NAMES)))
        self.beta = nn.Parameter(1e-3 * torch.randn(num_layers, NUM_LEVELS, len(DIRECTIONS)))
        self.stem = stem(stem_channels)
        self.cells = nn.ModuleDict()
        for layer in range(1, num_layers + 1):
            for level in reachable_levels(layer):
                for source in self.sources(layer, level):
                    prev_channels = self.node_channels(layer - 1, source)
                    if level in reachable_levels(layer - 2):
                        prev_prev_channels = self.node_channels(layer - 2, level)
                    else:
                        prev_prev_channels = prev_channels
                    self.cells[self.cell_key(layer, level, source)] = SearchCell(
                        prev_prev_channels, prev_channels, filter_multiplier * 2**level, num_blocks)
        last_levels = reachable_levels(num_layers)
        self.heads = nn.ModuleList(
            LevelHead(self.node_channels(num_layers, s), s, num_classes, aspp_channels, aspp_rate_base)
            for s in last_levels
        )
        self.last_layer_prefixes = tuple(f"heads.{level}.classifier." for level in last_levels)
        self.output_stride = LEVEL_STRIDES[max(last_levels)]

    # ------------------------------------------------------------------------------ the trellis

    @staticmethod
    def sources(layer: int, level: int) -> list[int]:
        """Levels of layer - 1 that feed node (layer, level): those of level-1, level, level+1 reachable."""
        return [s for s in (level - 1, level, level + 1) if s in reachable_levels(layer - 1)]

    @staticmethod
    def cell_key(layer: int, level: int, source: int) -> str:
        return f"layer{layer}_level{level}_from{source}"

    def cell(self, layer: int, level: int, source: int) -> SearchCell:
        return self.cells[self.cell_key(layer, level, source)]

    def node_channels(self, layer: int, level: int) -> int:
        """Channels of node (layer, level): the stem's at layer 0, else B * F * 2^level."""
        return self.stem_channels if layer == 0 else self.num_blocks * self.filter_multiplier * 2**level

    def arch_parameters(self) -> list[nn.Parameter]:
        """[alpha, beta]: the architecture, updated on trainB."""
        return [self.alpha, self.beta]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except alpha and beta: the weights, updated on trainA."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # ------------------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"AutoDeepLabSearch expects images (N, 3, H, W), got shape {tuple(x.shape)}")
        op_weights = self.alpha.softmax(dim=-1)
        transition = beta_probabilities(self.beta)  # (L, 4, 3)
        nodes = {(0, 0): self.stem(x)}
        sizes = level_sizes(tuple(nodes[(0, 0)].shape[-2:]))
        for layer in range(1, self.num_layers + 1):
            for level in reachable_levels(layer):
                node = 0
                for source in self.sources(layer, level):
                    prev = resize(nodes[(layer - 1, source)], sizes[level])
                    prev_prev = nodes.get((layer - 2, level), prev)
                    weight = transition[layer - 1, source, level - source + 1]
                    node = node + weight * self.cell(layer, level, source)(prev_prev, prev, op_weights)
                nodes[(layer, level)] = node
        size = tuple(x.shape[-2:])
        last = self.num_layers
        return sum(resize(head(nodes[(last, level)]), size) for level, head in enumerate(self.heads))
