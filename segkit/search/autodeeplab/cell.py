"""The relaxed Auto-DeepLab cell, searched with alpha (blocks and edges: segkit.models.autodeeplab.cell).

    block_i = sum over states j of MixedOp_{j->i}(state_j)
            = sum_j sum_k softmax(alpha[edge(i, j)])_k * op_k(state_j)

The cell output is the concatenation of the B blocks, ``(N, B * C, h, w)``, as for the decoded cell.
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.models.autodeeplab.cell import cell_edges, relu_conv_bn
from segkit.models.autodeeplab.ops import OP_NAMES, MixedOp


class SearchCell(nn.Module):
    """The relaxed cell (see the module docstring).

    Args:
        prev_prev_channels, prev_channels: channels of the two inputs.
        channels: block width C (every operator works on C channels).
        num_blocks: B.

    ``forward(prev_prev: (N, Cpp, h, w), prev: (N, Cp, h, w), op_weights: (E, 8))`` with E = num_edges(B)
    and op_weights = softmax(alpha, -1), returns ``(N, B * C, h, w)``. ``self.edges[e]`` is the MixedOp of
    edge e = the e-th pair of ``cell_edges(B)``.
    """

    def __init__(self, prev_prev_channels: int, prev_channels: int, channels: int, num_blocks: int):
        super().__init__()
        self.num_blocks = num_blocks
        self.channels = channels
        self.preprocess_prev_prev = relu_conv_bn(prev_prev_channels, channels)
        self.preprocess_prev = relu_conv_bn(prev_channels, channels)
        self.edges = nn.ModuleList(MixedOp(channels) for _ in cell_edges(num_blocks))

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor, op_weights: torch.Tensor) -> torch.Tensor:
        expected = (len(self.edges), len(OP_NAMES))
        if op_weights.shape != expected:
            raise ValueError(f"SearchCell with {self.num_blocks} blocks: op_weights must have shape "
                             f"{expected}, got {tuple(op_weights.shape)}")
        states = [self.preprocess_prev_prev(prev_prev), self.preprocess_prev(prev)]
        edge = 0
        for _block in range(self.num_blocks):
            block_output = 0
            for state in states:  # every earlier state feeds this block: 2 + block edges
                block_output = block_output + self.edges[edge](state, op_weights[edge])
                edge += 1
            states.append(block_output)
        return torch.cat(states[2:], dim=1)
