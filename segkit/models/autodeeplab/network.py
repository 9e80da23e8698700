"""The decoded Auto-DeepLab network: a stem, one discrete cell per layer along a path of output strides, ASPP.

    image -> stem (stride 4) -> cell 1 at stride path[0] -> ... -> cell L at stride path[-1]
          -> ASPP (1x1 | 3x3 rate 96/stride | image pooling) -> 1x1 logits conv -> bilinear to (H, W)

Levels s = 0, 1, 2, 3 are the output strides 4, 8, 16, 32 (LEVEL_STRIDES). A path starts at stride 4 (the
stem, layer 0) and moves at most one level per layer, so layer l can reach the levels 0..min(l, 3).
Cell l reads the outputs of layers l-1 and l-2 on the path (the stem stands in for the missing ones of
cells 1 and 2), both resized bilinearly to the cell's resolution. With filter multiplier F a cell at level
s has block width F * 2^s and outputs B * F * 2^s channels (B blocks per cell).

This is the plain model the paper retrains from scratch (Liu et al. 2019, arXiv:1901.02985). The trellis
helpers here (stem, LevelHead, level sizes) are shared with the relaxed search network in
segkit.search.autodeeplab.network, which also decodes a genotype and a path from its alpha and beta.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.deeplabv3 import ASPP

from .cell import DiscreteCell, check_genotype, state_name

LEVEL_STRIDES = (4, 8, 16, 32)
NUM_LEVELS = len(LEVEL_STRIDES)


def reachable_levels(layer: int) -> range:
    """Levels of the trellis at ``layer`` (layer 0 = the stem output at stride 4): 0..min(layer, 3)."""
    return range(min(layer, NUM_LEVELS - 1) + 1)


def level_sizes(stem_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Spatial size of each level, from the stem output's (stride 4) size: ceil(size / 2^level)."""
    height, width = stem_size
    return [(-(-height // 2**level), -(-width // 2**level)) for level in range(NUM_LEVELS)]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, h, w)`` to ``size`` (unchanged when it already has that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def stem(out_channels: int) -> nn.Sequential:
    """Image to stride 4: 3x3 conv stride 2 (3 -> out/2) -> 3x3 conv (out/2 -> out/2) -> 3x3 conv stride 2
    (-> out), each conv without bias followed by BN and ReLU. ``(N, 3, H, W) -> (N, out, ceil(H/4), ...)``."""
    half = max(1, out_channels // 2)
    layers = OrderedDict()
    for index, (c_in, c_out, stride) in enumerate([(3, half, 2), (half, half, 1), (half, out_channels, 2)]):
        layers[f"conv{index + 1}"] = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        layers[f"bn{index + 1}"] = nn.BatchNorm2d(c_out)
        layers[f"relu{index + 1}"] = nn.ReLU()
    return nn.Sequential(layers)


class LevelHead(nn.Module):
    """ASPP (1x1 | 3x3 at rate 96 / stride | image pooling) -> 1x1 logits conv ``classifier``.

    ``(N, in, h, w) -> (N, num_classes, h, w)``.
    """

    def __init__(self, in_channels: int, level: int, num_classes: int, aspp_channels: int,
                 aspp_rate_base: int = 96):
        super().__init__()
        rate = max(1, aspp_rate_base // LEVEL_STRIDES[level])
        self.aspp = ASPP(in_channels, (rate,), out_channels=aspp_channels)
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.aspp(x))


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Auto-DeepLab option {name} must be an integer >= 1, got {value!r}")


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
        num_classes: output channels. filter_multiplier: F, block width F * 2^level. stem_channels: channels
            of the stem output. aspp_channels: width of the ASPP. aspp_rate_base: ASPP rate = base / stride.

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
