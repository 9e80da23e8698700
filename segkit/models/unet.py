"""UNet (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation"),
written from scratch in the layout of the widely used PyTorch re-implementation: padded 3x3 convolutions
with batch norm, so the output has the size of the input.

    encoder     stem: DoubleConv(3 -> c)
                level i = 1..depth: MaxPool 2x2 -> DoubleConv(c·2^(i-1) -> c·2^i)   (bottleneck: i = depth)
    decoder     level i = depth-1..0: upsample x2 -> pad to the skip's size -> concat [skip, up] -> DoubleConv
    classifier  1x1 conv (c -> num_classes)

DoubleConv = (3x3 conv without bias -> BatchNorm -> ReLU) twice; the bias is left out because the batch norm
that follows adds its own.

Two ways to upsample:
- ``upsampling="transposed"``: a 2x2 transposed convolution with stride 2 that also halves the channels.
- ``upsampling="bilinear"``: parameter-free bilinear resize (``align_corners=True``, as in the common
  implementation). It cannot halve the channels, so every channel count below the top of the decoder is
  halved instead ("factor 2"): the bottleneck has c·2^depth / 2 channels and each decoder DoubleConv
  outputs half of its level's width, except the last which outputs c.

With c = 64, depth 4 and 21 classes this has 31,038,933 parameters (transposed) or 17,264,277 (bilinear),
the numbers of the common implementation.

Any input size works: max-pooling floors odd sizes (65 -> 32), the x2 upsampling then gives 64, and the
upsampled map is zero-padded (half before, the rest after; bottom/right gets the extra pixel) to the size
of the skip connection before concatenation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLING_MODES = ("transposed", "bilinear")


class DoubleConv(nn.Sequential):
    """(3x3 conv, no bias -> BN -> ReLU) x 2.  ``(N, in, H, W) -> (N, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid_channels = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool then DoubleConv.  ``(N, in, H, W) -> (N, out, floor(H/2), floor(W/2))``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


def pad_to_match(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x (N, C, h, w)`` to the spatial size ``(H, W)`` of ``reference`` (``H >= h``, ``W >= w``).

    The difference is split: ``(H - h) // 2`` rows on top, the rest at the bottom; the same for columns.
    """
    diff_h = reference.shape[-2] - x.shape[-2]
    diff_w = reference.shape[-1] - x.shape[-1]
    # F.pad lists the last dimension first: (left, right, top, bottom).
    return F.pad(x, [diff_w // 2, diff_w - diff_w // 2, diff_h // 2, diff_h - diff_h // 2])


class Up(nn.Module):
    """Upsample x2, pad to the skip's size, concatenate ``[skip, up]`` on channels, DoubleConv.

    ``in_channels`` is the width after concatenation (skip + upsampled), which is also the width of the
    incoming deeper map: the transposed conv halves it, bilinear mode relies on the deeper map already
    having half the width (see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, upsampling: str = "transposed"):
        super().__init__()
        if upsampling == "bilinear":
            self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, mid_channels=in_channels // 2)
        else:
            self.upsample = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, deeper: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``deeper: (N, C_d, h, w)``, ``skip: (N, C_s, H, W)``, ``H in {2h, 2h+1}`` -> ``(N, out, H, W)``."""
        up = pad_to_match(self.upsample(deeper), skip)
        return self.conv(torch.cat([skip, up], dim=1))


MAX_DEPTH = 8  # a stride of 256: more would need inputs of over 512 pixels for a 2x2 bottleneck
MAX_BASE_CHANNELS = 1024  # 16x the paper's 64


class UNet(nn.Module):
    """UNet for semantic segmentation.

    Args:
        num_classes: number of output channels (logits).
        in_channels: image channels (3 for RGB).
        base_channels: width ``c`` of the first level, 1..MAX_BASE_CHANNELS; level ``i`` has ``c·2^i``
            channels.
        depth: number of 2x downsamplings (4 in the paper), 1..MAX_DEPTH. The deepest features have stride
            ``2^depth``.
        upsampling: ``"transposed"`` (learned 2x2 transposed conv) or ``"bilinear"`` (fixed resize, half the
            channels in the lower levels).

    ``forward(x: (N, in_channels, H, W) float) -> logits (N, num_classes, H, W) float`` for any
    H, W >= 2^depth (below that the deepest max-pool would get an empty map).

    Attributes:
        output_stride: ``2^depth``, the stride of the deepest (bottleneck) features.
        last_layer_prefixes: ``("classifier.",)``: parameter-name prefix of the final 1x1 logits conv.
    """

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        upsampling: str = "transposed",
    ):
        super().__init__()
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"UNet: upsampling={upsampling!r} is not one of {UPSAMPLING_MODES}")
        if depth < 1 or base_channels < 1 or num_classes < 1:
            raise ValueError(
                f"UNet: depth, base_channels and num_classes must be >= 1, got depth={depth}, "
                f"base_channels={base_channels}, num_classes={num_classes}"
            )
        if depth > MAX_DEPTH or base_channels > MAX_BASE_CHANNELS:
            raise ValueError(
                f"UNet: depth must be <= {MAX_DEPTH} and base_channels <= {MAX_BASE_CHANNELS}, got "
                f"depth={depth}, base_channels={base_channels}: the bottleneck has base_channels x 2^depth "
                f"channels ({base_channels * 2**depth:,} here) and about 9 x that squared weights"
            )
        factor = 2 if upsampling == "bilinear" else 1
        widths = [base_channels * 2**level for level in range(depth + 1)]  # c, 2c, ..., c·2^depth

        self.stem = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList()
        for level in range(1, depth + 1):
            out_channels = widths[level] // factor if level == depth else widths[level]
            self.downs.append(Down(widths[level - 1], out_channels))
        self.ups = nn.ModuleList()
        for level in reversed(range(depth)):  # depth-1, ..., 0
            out_channels = widths[level] // factor if level > 0 else widths[0]
            self.ups.append(Up(widths[level + 1], out_channels, upsampling))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

        self.depth = depth
        self.output_stride = 2**depth
        self.last_layer_prefixes = ("classifier.",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, in_channels, H, W) float -> logits (N, num_classes, H, W) float``."""
        min_size = 2**self.depth
        if x.shape[-2] < min_size or x.shape[-1] < min_size:
            raise ValueError(
                f"UNet with depth {self.depth} needs inputs of at least {min_size}x{min_size} pixels, "
                f"got {tuple(x.shape[-2:])}"
            )
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()  # bottleneck
        for up in self.ups:
            y = up(y, skips.pop())
        return self.classifier(y)
