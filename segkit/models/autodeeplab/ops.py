"""The eight cell operators of Auto-DeepLab (Liu et al. 2019, arXiv:1901.02985), and the mixed operator.

Every operator maps ``(N, C, h, w) float -> (N, C, h, w) float``: same channels, same size (cells never
change the resolution; the network resizes a cell's inputs before the cell sees them).

    none           zeros (the edge is absent)
    max_pool_3x3   3x3 max pooling, stride 1, padding 1
    avg_pool_3x3   3x3 average pooling, stride 1, padding 1, padding NOT counted (a corner averages 4 pixels)
    skip_connect   identity
    sep_conv_3x3   separable conv, twice: (ReLU -> depthwise 3x3 -> pointwise 1x1 -> BN) x 2
    sep_conv_5x5   the same with 5x5 depthwise kernels
    dil_conv_3x3   atrous separable conv, once: ReLU -> depthwise 3x3 rate 2 -> pointwise 1x1 -> BN
    dil_conv_5x5   the same with a 5x5 kernel rate 2

The definitions are those of DARTS (Liu, Simonyan, Yang 2019, arXiv:1806.09055), which Auto-DeepLab reuses:
a depthwise conv has one k x k filter per channel (``groups=C``), the pointwise 1x1 conv mixes channels,
convolutions have no bias (BatchNorm follows), and "same" padding ``dilation * (k // 2)`` keeps the size.
Two differences from DARTS, to keep the code short and the mixed op an exact weighted sum of the discrete
ops: BatchNorm layers are affine (DARTS searches with ``affine=False``), and pooling is not followed by an
extra BatchNorm inside the mixed op.

The mixed operator (the continuous relaxation of one edge) is

    MixedOp(x) = sum_k  softmax(alpha_edge)_k * op_k(x),      k over OP_NAMES (8 operators)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

OP_NAMES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
NONE_INDEX = OP_NAMES.index("none")


class Zero(nn.Module):
    """The "none" operator: ``(N, C, h, w) -> zeros of the same shape``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def relu_depthwise_pointwise_bn(channels: int, kernel_size: int, dilation: int,
                                suffix: str = "") -> OrderedDict:
    """Named layers ReLU -> depthwise k x k (dilation d, padding d*(k//2)) -> pointwise 1x1 -> BN."""
    padding = dilation * (kernel_size // 2)
    depthwise = nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation,
                          groups=channels, bias=False)
    return OrderedDict([
        (f"relu{suffix}", nn.ReLU()),
        (f"depthwise{suffix}", depthwise),
        (f"pointwise{suffix}", nn.Conv2d(channels, channels, 1, bias=False)),
        (f"bn{suffix}", nn.BatchNorm2d(channels)),
    ])


def separable_conv(channels: int, kernel_size: int) -> nn.Sequential:
    """DARTS separable conv: (ReLU -> depthwise k x k -> pointwise 1x1 -> BN) twice.

    Children: relu1, depthwise1, pointwise1, bn1, relu2, depthwise2, pointwise2, bn2.
    """
    layers = relu_depthwise_pointwise_bn(channels, kernel_size, 1, "1")
    layers.update(relu_depthwise_pointwise_bn(channels, kernel_size, 1, "2"))
    return nn.Sequential(layers)


def atrous_conv(channels: int, kernel_size: int, dilation: int = 2) -> nn.Sequential:
    """DARTS dilated conv: ReLU -> depthwise k x k with rate ``dilation`` -> pointwise 1x1 -> BN (once).

    Children: relu, depthwise, pointwise, bn. A 3x3 kernel at rate 2 sees a 5x5 window, a 5x5 one 9x9.
    """
    return nn.Sequential(relu_depthwise_pointwise_bn(channels, kernel_size, dilation))


def none_op(channels: int) -> nn.Module:
    return Zero()


def max_pool_3x3(channels: int) -> nn.Module:
    return nn.MaxPool2d(3, stride=1, padding=1)


def avg_pool_3x3(channels: int) -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def skip_connect(channels: int) -> nn.Module:
    return nn.Identity()


def sep_conv_3x3(channels: int) -> nn.Module:
    return separable_conv(channels, 3)


def sep_conv_5x5(channels: int) -> nn.Module:
    return separable_conv(channels, 5)


def dil_conv_3x3(channels: int) -> nn.Module:
    return atrous_conv(channels, 3)


def dil_conv_5x5(channels: int) -> nn.Module:
    return atrous_conv(channels, 5)


# Operator name -> constructor taking the number of channels C (in = out).
OPS: dict[str, Callable[[int], nn.Module]] = {
    "none": none_op,
    "max_pool_3x3": max_pool_3x3,
    "avg_pool_3x3": avg_pool_3x3,
    "skip_connect": skip_connect,
    "sep_conv_3x3": sep_conv_3x3,
    "sep_conv_5x5": sep_conv_5x5,
    "dil_conv_3x3": dil_conv_3x3,
    "dil_conv_5x5": dil_conv_5x5,
}


class MixedOp(nn.Module):
    """One edge of the relaxed cell: all eight operators, mixed by architecture weights.

    ``forward(x: (N, C, h, w), weights: (8,) float)`` returns ``sum_k weights[k] * op_k(x)``, where the
    weights are the softmax of the edge's alpha row, in the order of ``OP_NAMES``. The operators are in
    ``self.ops`` (a ModuleDict keyed by operator name), so the decoded cell can take over their weights.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.ops = nn.ModuleDict({name: OPS[name](channels) for name in OP_NAMES})

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if weights.shape != (len(OP_NAMES),):
            raise ValueError(f"MixedOp: weights must have shape ({len(OP_NAMES)},), "
                             f"got {tuple(weights.shape)}")
        return sum(weight * op(x) for weight, op in zip(weights, self.ops.values(), strict=True))
