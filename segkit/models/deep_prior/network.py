"""Deep priors (DP-NAS): a random-weight encoder that is never trained plus a trained linear head.

    model = DeepPriorModel(RandomEncoder("[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]", seed=0), num_classes=21)
    model = build_model("deep_prior", num_classes=21, arch="[C(16,3,1,1,0), P(2,2)]", seed=0)

The idea (Mundt, Pliushch and Ramesh 2021, "Neural Architecture Search of Deep Priors", CVPR-W,
arXiv:2104.06788; code ccc-frankfurt/DP-NAS): how well an architecture can solve a task is already visible
when its weights are random, if only a linear classifier on its features is trained. Training the head
alone is a convex problem (multinomial logistic regression per pixel), cheap enough to score many
architectures, and the encoder's features can be computed once and stored (embeddings.py).

Encoder (RandomEncoder): the layers of an architecture string (archstring.py), every conv weight drawn
Kaiming-normal from a seeded generator,

    w ~ N(0, 2 / fan_in),  fan_in = in_channels * kernel * kernel     (torch.nn.init.kaiming_normal_,
                                                                        mode="fan_in", nonlinearity="relu")

one conv after the other in module order (main conv, then its 1x1 shortcut when it has one), with a
`torch.Generator` seeded with `seed`: the same (arch, seed) always gives the same weights. Convs have no bias.
The gain 2 keeps the mean square of the activations about constant through conv -> ReLU layers (He et al.
2015), so deep random encoders neither explode nor vanish; a residual layer adds its input, which roughly
doubles it.

No batch norm, a deliberate choice: a never-trained BatchNorm in eval mode holds its initial statistics
(mean 0, variance 1, scale 1, shift 0) and computes x / sqrt(1 + eps), practically the identity; in training
mode (what DP-NAS does when it computes features) it normalises with the statistics of the current batch, so
an image's features would depend on the other images in its batch and could not be cached per image.

Head (LinearHead): a 1x1 conv with bias from the encoder's F channels to C classes, started at zero (the loss
is convex in it, so the start does not decide where it ends, and a score depends only on the encoder), its
logits upsampled bilinearly (align_corners=False) from the encoder's output resolution to the input size.

`freeze_encoder=True` (the deep prior): the encoder's parameters get requires_grad=False, so
`segkit.optim.param_groups` leaves them out of the optimizer, the encoder runs without autograd, and it stays
in eval mode even when the Trainer calls `model.train()` (for an encoder given by you that holds BatchNorm
or dropout, this keeps its statistics and outputs fixed). `freeze_encoder=False` trains the whole network
from the same random start (the "fully trained" comparison of the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .archstring import Conv, canonical_arch, out_channels, output_stride, parse_arch

DEFAULT_ARCH = "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,0), P(2,2), C(64,3,1,1,1), P(2,2)]"


class ConvReLU(nn.Module):
    """C(features,kernel,stride,pad,0): y = ReLU(conv(x)); x (N, in, H, W) -> (N, features, H', W')."""

    def __init__(self, in_channels: int, layer: Conv):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, layer.features, layer.kernel, layer.stride, layer.pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class ResidualConvReLU(nn.Module):
    """C(features,kernel,1,(kernel-1)/2,1): y = ReLU(conv(x)) + shortcut(x), shortcut = identity when the
    channels stay the same, else a 1x1 conv without bias. x (N, in, H, W) -> (N, features, H, W)."""

    def __init__(self, in_channels: int, layer: Conv):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, layer.features, layer.kernel, 1, layer.pad, bias=False)
        self.shortcut = None
        if in_channels != layer.features:
            self.shortcut = nn.Conv2d(in_channels, layer.features, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)) + (x if self.shortcut is None else self.shortcut(x))


class RandomEncoder(nn.Sequential):
    """The encoder of an architecture string with Kaiming-normal weights drawn from `seed` (module docstring).

    Maps images (N, in_channels, H, W) float to features (N, out_channels, H', W'); for a feasible input
    H' is about H / output_stride. Attributes: arch (canonical string), seed, out_channels, output_stride.
    An empty architecture '[]' is the identity: the features are the normalised colours themselves.
    """

    def __init__(self, arch: str, seed: int = 0, in_channels: int = 3):
        layers = parse_arch(arch)
        modules = []
        channels = in_channels
        for layer in layers:
            if isinstance(layer, Conv):
                modules.append(ResidualConvReLU(channels, layer) if layer.skip else ConvReLU(channels, layer))
                channels = layer.features
            else:
                modules.append(nn.MaxPool2d(layer.size, layer.stride))
        super().__init__(*modules)
        self.arch = canonical_arch(layers)
        self.layers = layers
        self.seed = int(seed)
        self.out_channels = out_channels(layers, in_channels)
        self.output_stride = output_stride(layers)
        kaiming_normal_from_seed(self, self.seed)


def kaiming_normal_from_seed(module: nn.Module, seed: int) -> None:
    """Draw every Conv2d weight of `module`, in `module.modules()` order, from N(0, 2 / fan_in) with one
    torch.Generator seeded with `seed`; conv biases (if any) become 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in module.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu", generator=generator)
                if conv.bias is not None:
                    conv.bias.zero_()


class LinearHead(nn.Module):
    """A 1x1 conv (with bias, started at 0) + bilinear upsampling: the per-pixel linear classifier.

    forward(features (N, F, h, w) float, size (H, W)) -> logits (N, C, H, W) float,
    logits = upsample_bilinear(W * features + b) with W (C, F), b (C,).
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        logits = self.classifier(features)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits


class HeadOnFeatures(nn.Module):
    """A LinearHead applied to stored features: features (N, F, h, w) -> logits (N, C, H, W) at image_size.

    Lets the Trainer (or any loop) train a head on cached embeddings; `HeadOnFeatures(model.head, (H, W))`
    trains the very parameters of a DeepPriorModel, which then predicts on images.
    """

    last_layer_prefixes = ("head.classifier.",)

    def __init__(self, head: LinearHead, image_size: tuple[int, int]):
        super().__init__()
        self.head = head
        self.image_size = tuple(image_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features, self.image_size)


class DeepPriorModel(nn.Module):
    """An encoder (random, by default frozen) + LinearHead: images (N, 3, H, W) -> logits (N, C, H, W).

    encoder: any module mapping images to features, with an `out_channels` attribute (RandomEncoder has it).
    freeze_encoder: True = deep prior (encoder fixed, in eval mode, requires_grad=False, run without
        autograd); False = the whole network trains.
    Parameter names: `encoder.*` and `head.classifier.{weight,bias}` (= last_layer_prefixes).
    """

    last_layer_prefixes = ("head.classifier.",)

    def __init__(self, encoder: nn.Module, num_classes: int, freeze_encoder: bool = True):
        super().__init__()
        channels = getattr(encoder, "out_channels", None)
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"DeepPriorModel: the encoder ({type(encoder).__name__}) needs an int attribute "
                             f"out_channels (the channels of its features), got {channels!r}")
        self.encoder = encoder
        self.head = LinearHead(channels, num_classes)
        self.freeze_encoder = bool(freeze_encoder)
        self.output_stride = getattr(encoder, "output_stride", 1)
        self.arch = getattr(encoder, "arch", None)
        if self.freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> DeepPriorModel:
        """Set training mode for the head; a frozen encoder always stays in eval mode."""
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features (N, F, h, w); computed without autograd when the encoder is frozen."""
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder(images)
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images), images.shape[-2:])


def deep_prior(num_classes: int = 21, arch: str = DEFAULT_ARCH, seed: int = 0,
               freeze_encoder: bool = True) -> DeepPriorModel:
    """build_model("deep_prior", ...): DeepPriorModel(RandomEncoder(arch, seed), num_classes, freeze_encoder).

    arch: a DP-NAS-style string (archstring.py); seed: the encoder weights' seed. The default arch has output
    stride 8.
    """
    return DeepPriorModel(RandomEncoder(arch, seed), num_classes, freeze_encoder)
