"""Figures of lecture 03 (models), computed with segkit and torch.

    python lectures/make_figures.py --only s03
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from segkit.course.exercises.s03 import CONV3, POOL, receptive_field
from segkit.models import build_model, count_parameters


def receptive_field_growth() -> Figure:
    """Receptive field against the number of 3x3 convolutions: plain, with a 2x2 pooling after every second
    conv (a UNet encoder), and with the dilation doubling at every conv (1, 2, 4, ...)."""
    depths = np.arange(1, 11)
    plain = [receptive_field([CONV3] * n) for n in depths]
    pooled = [receptive_field([layer for i in range(n) for layer in ([CONV3, POOL] if i % 2 else [CONV3])])
              for n in depths]  # fmt: skip
    dilated = [receptive_field([(3, 1, 2**i, 2**i) for i in range(n)]) for n in depths]
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(depths, plain, "o-", label="3x3 convs (linear: 2n + 1)")
    ax.plot(depths, pooled, "s-", label="2x2 max-pool after every 2nd conv")
    ax.plot(depths, dilated, "^-", label="dilation 1, 2, 4, ... (2^(n+1) - 1)")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("number of 3x3 convolutions")
    ax.set_ylabel("receptive field (pixels)")
    ax.set_title("r = 1 + sum d (k - 1) x product of earlier strides", fontsize=9)
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _footprint(layers: list[nn.Module], size: int = 31) -> np.ndarray:
    """Gradient of the centre output pixel with respect to the input: which input pixels it sees, and how
    many paths lead from each (all weights 1)."""
    net = nn.Sequential(*layers)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.ones_(module.weight)
    image = torch.ones(1, 1, size, size, requires_grad=True)
    out = net(image)
    out[0, 0, size // 2, size // 2].backward()
    return image.grad[0, 0].numpy()


def _conv(dilation: int) -> nn.Conv2d:
    return nn.Conv2d(1, 1, 3, padding=dilation, dilation=dilation, bias=False)


def atrous_footprints() -> Figure:
    """Input pixels seen by one output pixel: a 3x3 conv with dilation 1, 2, 4, and the stack of the three."""
    panels = {
        "3x3, dilation 1": [_conv(1)],
        "3x3, dilation 2": [_conv(2)],
        "3x3, dilation 4": [_conv(4)],
        "stack: dilation 1, 2, 4": [_conv(1), _conv(2), _conv(4)],
    }
    figure, axes = plt.subplots(1, 4, figsize=(11, 3))
    for ax, (title, layers) in zip(axes, panels.items(), strict=True):
        footprint = _footprint(layers)
        ax.imshow(footprint > 0, cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
        seen = np.flatnonzero((footprint > 0).any(axis=0))
        ax.set_title(f"{title}\nfield {seen[-1] - seen[0] + 1} px, 9 weights per layer", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    return figure


ZOO = {
    "unet": dict(base_channels=64, depth=4),
    "fcn": dict(backbone="resnet50"),
    "deeplabv3": dict(backbone="resnet50"),
    "smp_unet": dict(encoder_name="resnet34"),
    "linknet": dict(encoder_name="resnet34"),
    "fpn": dict(encoder_name="resnet34"),
    "pspnet": dict(encoder_name="resnet34"),
    "deeplabv3plus": dict(encoder_name="resnet34"),
}


# Parameter-name prefixes of the encoders: torchvision/our DeepLabV3 "backbone.", smp "encoder.", our UNet's
# contracting path "stem." and "downs.".
ENCODER_PREFIXES = ("backbone.", "encoder.", "stem.", "downs.")


def used_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a forward pass uses: those that get a gradient from one backward pass (eval mode,
    a (2, 3, 64, 64) input). A model may store layers it never calls (smp's PSPNet keeps the ResNet stages
    after the ones its encoder_depth uses); counting them would overstate its size."""
    model.eval()
    model.zero_grad(set_to_none=True)
    output = model(torch.randn(2, 3, 64, 64))
    (output["out"] if isinstance(output, dict) else output).sum().backward()
    return {name: p for name, p in model.named_parameters() if p.grad is not None}


def model_sizes() -> Figure:
    """Parameters that the models in segkit.models use (21 classes; random weights), split into the
    encoder (ENCODER_PREFIXES) and the rest (decoder and head); stored but unused parameters are written
    above the bar."""
    names, trunk, rest, strides, unused = [], [], [], [], []
    for name, options in ZOO.items():
        model = build_model(name, num_classes=21, **options)
        used = used_parameters(model)
        total = sum(p.numel() for p in used.values())
        extractor = sum(p.numel() for n, p in used.items() if n.startswith(ENCODER_PREFIXES))
        names.append(f"{name}\n{next(iter(options.values()))}")
        trunk.append(extractor / 1e6)
        rest.append((total - extractor) / 1e6)
        strides.append(model.output_stride)
        unused.append((count_parameters(model) - total) / 1e6)
    figure, ax = plt.subplots(figsize=(9, 3.8))
    positions = np.arange(len(names))
    ax.bar(positions, trunk, color="#8da0cb", label="encoder (backbone)")
    ax.bar(positions, rest, bottom=trunk, color="#fc8d62", label="decoder / head")
    for position, total, stride, idle in zip(positions, np.add(trunk, rest), strides, unused, strict=True):
        note = f"\n(+{idle:.1f}M unused)" if idle >= 0.05 else ""
        ax.text(position, total + 0.5, f"{total:.2f}M\nOS {stride}{note}", ha="center", fontsize=7)
    ax.set_xticks(positions, names, fontsize=8)
    ax.set_ylabel("parameters used (millions)")
    ax.set_ylim(0, max(np.add(trunk, rest)) * 1.25)
    ax.set_title("segkit.models: parameters used by a forward pass, and output stride (OS), 21 classes",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


FIGURES = {
    "s03_receptive_field": receptive_field_growth,
    "s03_atrous_footprints": atrous_footprints,
    "s03_model_sizes": model_sizes,
}
