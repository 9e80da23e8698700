"""Session 3 exercises: building blocks and geometry of segmentation networks.

    make_double_conv   the UNet block: (3x3 conv without bias -> BatchNorm -> ReLU) twice
    conv_output_size   the spatial size after a stack of convolutions / poolings
    receptive_field    how many input pixels (along one axis) one output pixel of such a stack can see

A layer of a stack is described by a tuple (kernel, stride, padding, dilation); a 2x2 max-pool with stride 2
is (2, 2, 0, 1), a 3x3 convolution with "same" padding is (3, 1, 1, 1), an atrous 3x3 convolution with
rate 2 is (3, 1, 2, 2).
"""

from __future__ import annotations

import torch
from torch import nn

from segkit.course.exercises.checker import Exercise, allclose, register
from segkit.models import count_parameters
from segkit.models.unet import DoubleConv

# ------------------------------------------------------------------------------------------- DoubleConv


def make_double_conv(in_channels: int, out_channels: int) -> nn.Module:
    """The UNet block: (N, in, H, W) -> (N, out, H, W).

        3x3 conv (in -> out, padding 1, no bias) -> BatchNorm2d(out) -> ReLU
        3x3 conv (out -> out, padding 1, no bias) -> BatchNorm2d(out) -> ReLU

    The convolutions have no bias: the batch norm right after subtracts the mean of each channel, which
    would cancel any bias, and adds its own shift (beta). This is segkit.models.unet.DoubleConv.
    """
    return DoubleConv(in_channels, out_channels)


def _double_conv_cases(rng) -> list[tuple[str, tuple]]:
    return [
        ("3 -> 8 channels (the first block of a small UNet)", (3, 8)),
        ("8 -> 16 channels", (8, 16)),
        ("16 -> 4 channels (fewer out than in)", (16, 4)),
        ("random channel counts", (int(rng.integers(1, 12)), int(rng.integers(2, 24)))),
    ]


def _state_entries(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    entries = module.state_dict().items()
    return [(name, tensor) for name, tensor in entries if not name.endswith("batches_tracked")]


def _randomise(module: nn.Module, seed: int) -> None:
    """Random weights and batch-norm statistics (so that every part of the block changes the output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("batches_tracked"):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            tensor.copy_(noise.abs() + 0.5 if name.endswith("running_var") else noise * 0.5)


def check_block(got, expected) -> str | None:
    """Load the reference block's (randomised) weights into the student's block, tensor by tensor in order,
    and compare the outputs on a random batch, in eval mode (running statistics) and in train mode (batch
    statistics)."""
    if not isinstance(got, nn.Module):
        return f"return an nn.Module (e.g. an nn.Sequential), got {type(got).__name__}"
    want, have = count_parameters(expected), count_parameters(got)
    if want != have:
        return (
            f"expected {want:,} parameters, got {have:,}: two 3x3 convs without bias and two BatchNorm2d "
            "(a bias in the convs adds out channels each; a missing BatchNorm removes 2 x out)"
        )
    _randomise(expected, seed=7)
    ours, theirs = _state_entries(expected), _state_entries(got)
    if [t.shape for _, t in ours] != [t.shape for _, t in theirs]:
        listing = ", ".join(f"{name} {tuple(t.shape)}" for name, t in theirs)
        return f"the layers are not conv, BN, conv, BN in this order with these shapes; yours: {listing}"
    with torch.no_grad():
        for (_, source), (_, target) in zip(ours, theirs, strict=True):
            target.copy_(source)
    x = torch.randn(2, expected[0].in_channels, 9, 11, generator=torch.Generator().manual_seed(3))
    for mode in ("eval", "train"):
        expected.train(mode == "train")
        got.train(mode == "train")
        with torch.no_grad():
            expected_out, got_out = expected(x.clone()), got(x.clone())
        message = allclose(got_out, expected_out, rtol=1e-4, atol=1e-5)
        if message is not None:
            if isinstance(got_out, torch.Tensor) and (got_out < 0).any():
                message += " — your block outputs negative values: is a ReLU missing (after each BN)?"
            return f"with the same weights, in {mode} mode: {message}"
    return None


register(Exercise(
    name="make_double_conv",
    description="UNet block: (3x3 conv without bias -> BatchNorm -> ReLU) x 2, padding 1",
    reference=make_double_conv,
    make_cases=_double_conv_cases,
    hint="nn.Sequential(nn.Conv2d(in, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(), "
         "nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU())",
    compare=check_block,
))


# ------------------------------------------------------------------------------------------ output size

Layer = tuple[int, int, int, int]  # (kernel, stride, padding, dilation)


def conv_output_size(size: int, layers: list[Layer]) -> int:
    """Spatial size (along one axis) after applying `layers` in order to an input of `size` pixels.

    Each layer (kernel k, stride s, padding p, dilation d) maps n pixels to

        n' = floor((n + 2p - d (k - 1) - 1) / s) + 1

    (the formula in the docs of nn.Conv2d and nn.MaxPool2d; a dilated kernel spans d (k - 1) + 1 pixels).
    """
    for kernel, stride, padding, dilation in layers:
        size = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return size


POOL: Layer = (2, 2, 0, 1)
CONV3: Layer = (3, 1, 1, 1)
RESNET_STEM: list[Layer] = [(7, 2, 3, 1), (3, 2, 1, 1)]  # 7x7 conv stride 2, then 3x3 max-pool stride 2


def _size_cases(rng) -> list[tuple[str, tuple]]:
    unet_encoder = [CONV3, CONV3] + [POOL, CONV3, CONV3] * 4
    return [
        ("a 3x3 conv with padding 1 keeps the size", (65, [CONV3])),
        ("a 2x2 max-pool floors odd sizes", (65, [POOL])),
        ("a UNet encoder (4 poolings) on 572", (572, unet_encoder)),
        ("the same on an odd size, 321", (321, unet_encoder)),
        ("unpadded 3x3 convs (the original U-Net)", (572, [(3, 1, 0, 1), (3, 1, 0, 1), POOL])),
        ("the ResNet stem on 513 (DeepLab's crop)", (513, RESNET_STEM)),
        ("atrous 3x3, rate 2, padding 2 keeps the size", (33, [(3, 1, 2, 2)])),
        ("atrous 3x3, rate 4, padding 1 shrinks it", (40, [(3, 1, 1, 4)])),
        ("stride 2 and dilation together", (int(rng.integers(50, 200)), [(3, 2, 1, 2), (5, 3, 0, 1)])),
    ]


register(Exercise(
    name="conv_output_size",
    description="size after a stack of (kernel, stride, padding, dilation) layers",
    reference=conv_output_size,
    make_cases=_size_cases,
    hint="per layer: n = (n + 2*p - d*(k - 1) - 1) // s + 1 — floor division, and the dilation stretches "
         "the kernel to d*(k - 1) + 1 pixels",
))


# -------------------------------------------------------------------------------------- receptive field


def receptive_field(layers: list[Layer]) -> int:
    """Receptive field (along one axis, in input pixels) of one output pixel of the stack `layers`.

    Each layer (kernel k, stride s, padding p, dilation d) widens it by d (k - 1) steps of the current
    "jump" (the distance, in input pixels, between neighbouring positions of the layer's input):

        r = 1 + sum_i d_i (k_i - 1) j_i,      j_1 = 1,  j_{i+1} = j_i s_i

    Padding does not change it (border pixels just see some zeros).
    """
    field, jump = 1, 1
    for kernel, stride, _padding, dilation in layers:
        field += dilation * (kernel - 1) * jump
        jump *= stride
    return field


def _field_cases(rng) -> list[tuple[str, tuple]]:
    return [
        ("one 3x3 conv", ([CONV3],)),
        ("two 3x3 convs (a UNet block)", ([CONV3, CONV3],)),
        ("block, pool, block (strides multiply the later growth)", ([CONV3, CONV3, POOL, CONV3, CONV3],)),
        ("a UNet encoder with 4 poolings", ([CONV3, CONV3] + [POOL, CONV3, CONV3] * 4,)),
        ("an atrous 3x3 conv, rate 2", ([(3, 1, 2, 2)],)),
        ("the ResNet stem, then an atrous 3x3 rate 6", (RESNET_STEM + [(3, 1, 6, 6)],)),
        ("random strides and dilations", ([(3, int(rng.integers(1, 3)), 1, int(rng.integers(1, 4)))
                                           for _ in range(5)],)),
    ]


register(Exercise(
    name="receptive_field",
    description="receptive field of one output pixel of a (kernel, stride, padding, dilation) stack",
    reference=receptive_field,
    make_cases=_field_cases,
    hint="keep a running jump j (product of the strides so far, starting at 1); each layer adds "
         "d*(k - 1)*j to the field, then j *= s. Without the jump, layers after a pooling look too small; "
         "without d, atrous convolutions look like ordinary ones",
))
