"""EncDec: the encoder-decoder meta-architecture of EncDecMeta (jmsckv/EncDecMeta), written from scratch.

A network is described by three lists of blocks; a block is a list of layers; a layer is ``(op, dilation)``:

    D_blocks   downsampling blocks: each starts with a stride-2 3x3 conv, then its layers
    B_blocks   bottleneck blocks (at least one, none empty): only their layers
    U_blocks   upsampling blocks, as many as D_blocks: 1x1 fuse conv, stride-2 3x3 transposed conv, layers

    op   kernel  dilation d                padding        (every layer keeps channels and spatial size)
    C    3x3     (d, d)                    (d, d)
    H    1x3     (1, d)  along the width   (0, d)
    V    3x1     (d, 1)  along the height  (d, 0)
    O    1x1     ignored (always 1)        0

Every convolution (layers, the stride-2 conv, the 1x1 fuse and the transposed conv) is followed by
BatchNorm -> ReLU -> Dropout(dropout); only the final 3x3 logits conv is plain. The convs that a BatchNorm
follows have no bias (the BatchNorm's shift makes it redundant); EncDecMeta keeps those biases, so its
parameter counts are larger by one number per output channel of each such conv. Layers are lists or tuples
(``["C", 2]`` from YAML, ``("C", 2)`` in Python).

Channel bookkeeping, with n = len(D_blocks), c = base_channels, H x W the input size:

    D_blocks[k-1], k = 1..n   in: c·2^(k-2) channels (the image's 3 for k = 1)   out: c·2^(k-1) at H/2^k
    B_blocks                  c·2^(n-1) channels at H/2^n
    U_blocks[n-k], k = n..1   in:   x with c·2^(k-1) channels at H/2^k (bottleneck or previous up block)
                              skip: the output of D_blocks[k-1], the same c·2^(k-1) channels at H/2^k
                              fuse: 1x1 conv, concat([x, skip]) (c·2^k channels) -> c·2^(k-2) (c for k = 1)
                              up:   3x3 transposed conv, stride 2, padding 1, output_padding 1: same
                                    channels, H/2^(k-1)
                              layers keep that width
    classifier                3x3 conv, padding 1, with bias: c -> num_classes at H x W

So the first up block works on the deepest features and U_blocks[i] returns the width that the encoder has
at its output resolution (c at full resolution), as in EncDecMeta; its skip is the encoder output with the
same resolution as its input. Each down block halves the size, so the network itself needs H and W
divisible by 2^n (``output_stride``). Other sizes (whole VOC images at evaluation) are zero-padded at the
bottom and right up to the next multiple and the logits cropped back, as segkit does for smp models; a search
space is checked so that its training crops need no padding (segkit.search.space.validate_space).

    model = EncDec(num_classes=21, D_blocks=[[("C", 1)], [("H", 2), ("V", 2)]], B_blocks=[[("C", 4)]],
                   U_blocks=[[("O", 1)], [("C", 1)]], base_channels=16, dropout=0.1)
    model(x)   # x: (N, 3, H, W) float, H and W divisible by 4 -> logits (N, 21, H, W) float
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# op -> kernel size (height, width); the dilation applies along the axes where the kernel has size 3.
OPS: dict[str, tuple[int, int]] = {"C": (3, 3), "H": (1, 3), "V": (3, 1), "O": (1, 1)}
BLOCK_KEYS = ("D_blocks", "B_blocks", "U_blocks")


def layer_problems(path: str, layer) -> list[str]:
    """What is wrong with one fixed layer ``(op, dilation)`` (empty list: nothing); `path` names it."""
    if not isinstance(layer, list | tuple) or len(layer) != 2:
        return [f"{path}: expected a layer (op, dilation) such as ('C', 1), got {layer!r}"]
    op, dilation = layer
    problems = []
    if op not in OPS:
        problems.append(f"{path}: unknown op {op!r}; ops are {', '.join(OPS)}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        problems.append(f"{path}: the dilation must be an integer >= 1, got {dilation!r}")
    return problems


def architecture_problems(D_blocks, B_blocks, U_blocks) -> list[str]:
    """Every problem of a fixed architecture, each as 'key.path: what is wrong' (empty list: none).

    Rules: each part is a list of blocks and each block a list of layers; at least one down block; as many
    up blocks as down blocks; at least one bottleneck block and none of them empty.
    """
    problems = []
    parts = {"D_blocks": D_blocks, "B_blocks": B_blocks, "U_blocks": U_blocks}
    for key, blocks in parts.items():
        if not isinstance(blocks, list | tuple):
            problems.append(f"{key}: expected a list of blocks (each a list of layers), got {blocks!r}")
            continue
        for i, block in enumerate(blocks):
            if not isinstance(block, list | tuple):
                problems.append(f"{key}.{i}: expected a block (a list of layers), got {block!r}")
                continue
            for j, layer in enumerate(block):
                problems += layer_problems(f"{key}.{i}.{j}", layer)
    if problems:
        return problems
    if len(D_blocks) == 0:
        problems.append("D_blocks: at least one downsampling block is needed, got none")
    if len(U_blocks) != len(D_blocks):
        problems.append(f"U_blocks: expected as many upsampling blocks as D_blocks ({len(D_blocks)}), "
                        f"got {len(U_blocks)}")
    if len(B_blocks) == 0:
        problems.append("B_blocks: at least one bottleneck block is needed, got none")
    for i, block in enumerate(B_blocks):
        if len(block) == 0:
            problems.append(f"B_blocks.{i}: a bottleneck block needs at least one layer, got an empty block")
    return problems


def describe_architecture(D_blocks, B_blocks, U_blocks) -> str:
    """A one-line summary: 'D: C1 / H2 V2 | B: C4 | U: O / C1'; blocks split by '/', '-' = empty block."""

    def block_text(block) -> str:
        return " ".join(op if op == "O" else f"{op}{dilation}" for op, dilation in block) or "-"

    parts = zip("DBU", (D_blocks, B_blocks, U_blocks), strict=True)
    return " | ".join(f"{name}: " + " / ".join(block_text(b) for b in blocks) for name, blocks in parts)


class ConvBNReLU(nn.Sequential):
    """conv -> BatchNorm -> ReLU -> Dropout.  ``(N, in, H, W) -> (N, out, H', W')`` (H' set by the conv)."""

    def __init__(self, conv: nn.Module, dropout: float):
        super().__init__(OrderedDict(
            conv=conv,
            bn=nn.BatchNorm2d(conv.out_channels),
            relu=nn.ReLU(inplace=True),
            dropout=nn.Dropout(dropout),
        ))


def make_layer(op: str, dilation: int, channels: int, dropout: float) -> ConvBNReLU:
    """One searchable layer (see the table in the module docstring); keeps channels and spatial size."""
    kernel = OPS[op]
    if op == "O":
        dilation = 1
    dilations = tuple(dilation if k == 3 else 1 for k in kernel)
    padding = tuple(d if k == 3 else 0 for k, d in zip(kernel, dilations, strict=True))
    conv = nn.Conv2d(channels, channels, kernel, padding=padding, dilation=dilations, bias=False)
    return ConvBNReLU(conv, dropout)


class DownBlock(nn.Sequential):
    """Stride-2 3x3 conv (in -> out) then the block's layers.  ``(N, in, H, W) -> (N, out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int, layers, dropout: float):
        reduce = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        super().__init__(OrderedDict(
            reduce=ConvBNReLU(reduce, dropout),
            layers=nn.Sequential(*(make_layer(op, d, out_channels, dropout) for op, d in layers)),
        ))


class UpBlock(nn.Module):
    """concat([x, skip]) -> 1x1 fuse conv -> stride-2 3x3 transposed conv -> the block's layers.

    ``x: (N, skip_channels, h, w)``, ``skip: (N, skip_channels, h, w)`` -> ``(N, out, 2h, 2w)``.
    """

    def __init__(self, skip_channels: int, out_channels: int, layers, dropout: float):
        super().__init__()
        self.fuse = ConvBNReLU(nn.Conv2d(2 * skip_channels, out_channels, 1, bias=False), dropout)
        transposed = nn.ConvTranspose2d(out_channels, out_channels, 3, stride=2, padding=1, output_padding=1,
                                        bias=False)
        self.up = ConvBNReLU(transposed, dropout)
        self.layers = nn.Sequential(*(make_layer(op, d, out_channels, dropout) for op, d in layers))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.layers(self.up(self.fuse(torch.cat([x, skip], dim=1))))


class EncDec(nn.Module):
    """Encoder-decoder network from block lists (EncDecMeta's meta search space; see the module docstring).

    Args:
        num_classes: output channels (logits).
        D_blocks: list of downsampling blocks, each a list of layers (op, dilation); may be empty lists.
        B_blocks: list of bottleneck blocks (at least one), each a non-empty list of layers.
        U_blocks: list of upsampling blocks, as many as D_blocks; U_blocks[0] is the deepest.
        base_channels: width c of the first down block; down block k has c·2^(k-1) channels.
        dropout: rate of the Dropout after every BatchNorm-ReLU (0 = none).

    ``forward(x: (N, 3, H, W) float) -> logits (N, num_classes, H, W) float``; sizes that are not
    multiples of 2^len(D_blocks) are zero-padded (bottom, right) for the network and cropped back.

    Attributes:
        output_stride: 2^len(D_blocks).
        architecture: the one-line summary of describe_architecture.
        last_layer_prefixes: ``("classifier.",)``, the final 3x3 logits conv.
    """

    def __init__(self, num_classes: int, D_blocks, B_blocks, U_blocks, base_channels: int = 16,
                 dropout: float = 0.0):
        super().__init__()
        problems = architecture_problems(D_blocks, B_blocks, U_blocks)
        if isinstance(base_channels, bool) or not isinstance(base_channels, int) or base_channels < 1:
            problems.append(f"base_channels: expected an integer >= 1, got {base_channels!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            problems.append(f"dropout: expected a number in [0, 1), got {dropout!r}")
        if problems:
            raise ValueError("encdec: " + "; ".join(problems))
        depth = len(D_blocks)
        widths = [base_channels * 2**k for k in range(depth)]  # output width of D_blocks[k]

        self.down = nn.ModuleList()
        in_channels = 3
        for k, layers in enumerate(D_blocks):
            self.down.append(DownBlock(in_channels, widths[k], layers, dropout))
            in_channels = widths[k]
        self.bottleneck = nn.Sequential(*(
            nn.Sequential(*(make_layer(op, d, widths[-1], dropout) for op, d in block)) for block in B_blocks
        ))
        self.up = nn.ModuleList()
        for i, layers in enumerate(U_blocks):
            level = depth - 1 - i  # index of the down block whose output is the skip
            out_channels = widths[level - 1] if level > 0 else base_channels
            self.up.append(UpBlock(widths[level], out_channels, layers, dropout))
        self.classifier = nn.Conv2d(base_channels, num_classes, 3, padding=1)

        self.depth = depth
        self.output_stride = 2**depth
        self.architecture = describe_architecture(D_blocks, B_blocks, U_blocks)
        self.last_layer_prefixes = ("classifier.",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, 3, H, W) float -> logits (N, num_classes, H, W) float``."""
        height, width = x.shape[-2:]
        stride = self.output_stride
        x = F.pad(x, [0, (-width) % stride, 0, (-height) % stride])  # (left, right, top, bottom); often no-op
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(x)
        for block in self.up:
            x = block(x, skips.pop())  # the deepest remaining skip has the resolution of x
        return self.classifier(x)[..., :height, :width]
