"""Auto-DeepLab cells: the block structure shared by the searched and the decoded cell, and the decoded cell.

A cell is a small directed acyclic graph of B blocks (Auto-DeepLab: B = 5). Its two inputs are the outputs
of the two previous layers, ``prev_prev`` (H^{l-2}) and ``prev`` (H^{l-1}), already resized to the cell's
resolution by the network; each goes through ReLU -> 1x1 conv -> BN to the cell's block width C. Then
block i (0-based) may read any earlier state:

    states = [prev_prev, prev, block 0, ..., block i-1]          (state index 0, 1, 2, ..., i+1)

Relaxed cell (searched):   block_i = sum over states j of  MixedOp_{j->i}(state_j)
                                   = sum_j sum_k softmax(alpha[edge(i, j)])_k * op_k(state_j)
Discrete cell (decoded):   block_i = op_a(state_a) + op_b(state_b)      two chosen (op, state) pairs

Either way the cell output is the concatenation of the B blocks: ``(N, B * C, h, w)``. The relaxed cell
(SearchCell) is part of the search, in segkit.search.autodeeplab.cell; this module holds what a decoded
network needs.

The edges are numbered block by block, then by state: block 0 owns edges 0-1 (from states 0, 1), block 1
edges 2-4 (states 0, 1, 2), ...; B blocks have B (B + 3) / 2 edges (20 for B = 5, 5 for B = 2).
``alpha`` has one row of 8 logits per edge, in the order of ``ops.OP_NAMES``; it lives in the network and is
shared by every cell (the cell receives ``softmax(alpha, dim=-1)`` in its forward).

A genotype (the decoded cell) is a list with one entry per block, each a list of two ``(op_name,
state_index)`` pairs, e.g. ``[[("sep_conv_3x3", 1), ("skip_connect", 0)], [("dil_conv_3x3", 2), ...]]``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .ops import OP_NAMES, OPS


def relu_conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """The DARTS input preprocessing: ReLU -> 1x1 conv (no bias) -> BN; children relu, conv, bn."""
    conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    return nn.Sequential(OrderedDict(relu=nn.ReLU(), conv=conv, bn=nn.BatchNorm2d(out_channels)))


def cell_edges(num_blocks: int) -> list[tuple[int, int]]:
    """The edges of a cell as ``(block, state)`` pairs, in the order of alpha's rows."""
    return [(block, state) for block in range(num_blocks) for state in range(2 + block)]


def num_edges(num_blocks: int) -> int:
    """Number of edges (rows of alpha) of a cell with B blocks: 2 + 3 + ... + (B + 1) = B (B + 3) / 2."""
    return num_blocks * (num_blocks + 3) // 2


def blocks_for_edges(edges: int) -> int:
    """B such that num_edges(B) == edges; ValueError when there is none."""
    for blocks in range(1, edges + 1):
        if num_edges(blocks) == edges:
            return blocks
    known = ", ".join(f"{num_edges(b)} (B={b})" for b in range(1, 7))
    raise ValueError(f"alpha has {edges} rows, which is no cell's number of edges; "
                     f"expected one of {known}, ...")


def state_name(state: int) -> str:
    """Readable name of a cell state: 0 -> "prev_prev", 1 -> "prev", 2 + i -> "block i"."""
    return {0: "prev_prev", 1: "prev"}.get(state, f"block {state - 2}")


def check_genotype(genotype) -> list[list[tuple[str, int]]]:
    """The genotype as a list of blocks of two ``(op_name, state)`` tuples; ValueError naming what is wrong.

    Accepts lists as well as tuples (a genotype read back from YAML or JSON).
    """
    if not isinstance(genotype, list | tuple) or not genotype:
        raise ValueError(f"genotype must be a non-empty list of blocks, got {genotype!r}")
    checked = []
    for block, pairs in enumerate(genotype):
        if not isinstance(pairs, list | tuple) or len(pairs) != 2:
            raise ValueError(f"genotype block {block}: expected two (op_name, state) pairs, got {pairs!r}")
        checked_pairs = []
        for pair in pairs:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"genotype block {block}: expected an (op_name, state) pair, got {pair!r}")
            op_name, state = pair
            if op_name not in OPS or op_name == "none":
                known = ", ".join(name for name in OP_NAMES if name != "none")
                raise ValueError(f"genotype block {block}: unknown operator {op_name!r}; "
                                 f"expected one of {known}")
            if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state < 2 + block:
                raise ValueError(f"genotype block {block}: state {state!r} out of range; block {block} reads "
                                 f"states 0..{1 + block} (0 prev_prev, 1 prev, 2+i block i)")
            checked_pairs.append((op_name, state))
        checked.append(checked_pairs)
    return checked


class DiscreteCell(nn.Module):
    """The decoded cell: each block is the sum of two chosen operators on two chosen states.

    Args:
        prev_prev_channels, prev_channels: channels of the two inputs.
        channels: block width C (every operator works on C channels).
        genotype: list of B blocks, each two ``(op_name, state)`` pairs (see the module docstring).

    ``forward(prev_prev, prev)`` returns ``(N, B * C, h, w)``. ``self.ops[2 * i + k]`` is the k-th operator
    of block i, reading state ``self.inputs[2 * i + k]``.
    """

    def __init__(self, prev_prev_channels: int, prev_channels: int, channels: int, genotype):
        super().__init__()
        self.genotype = check_genotype(genotype)
        self.num_blocks = len(self.genotype)
        self.channels = channels
        self.preprocess_prev_prev = relu_conv_bn(prev_prev_channels, channels)
        self.preprocess_prev = relu_conv_bn(prev_channels, channels)
        self.ops = nn.ModuleList(OPS[op_name](channels) for pairs in self.genotype for op_name, _ in pairs)
        self.inputs = [state for pairs in self.genotype for _, state in pairs]

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess_prev_prev(prev_prev), self.preprocess_prev(prev)]
        for block in range(self.num_blocks):
            first, second = 2 * block, 2 * block + 1
            states.append(self.ops[first](states[self.inputs[first]])
                          + self.ops[second](states[self.inputs[second]]))
        return torch.cat(states[2:], dim=1)
