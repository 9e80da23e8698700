"""ResNet feature extractors with a chosen output stride (dilated / "atrous" ResNets).

A classification ResNet reduces the resolution 32x: stem /4, then layer2, layer3 and layer4 /2 each. DeepLab
keeps more resolution by removing the stride of the last stage(s) and dilating their 3x3 convolutions instead,
so the receptive field grows as before while the feature map stays larger:

    output stride 32: no change                    layer4: H/32
    output stride 16: layer4 stride 2 -> 1, dilation 2            layer4: H/16
    output stride 8:  layer3 dilation 2, layer4 dilation 4        layer4: H/8

torchvision builds this for Bottleneck ResNets (50/101/152) with ``replace_stride_with_dilation`` (one flag
per layer2..layer4). Its BasicBlock (ResNet-18/34) refuses dilation, so for those we convert the layers after
construction with :func:`dilate_layer`, which follows the same rule as torchvision: the first block of a
dilated stage keeps the previous dilation, the following blocks use the new one.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from .pretrained import torchvision_weights_state_dict

# name -> (constructor, ImageNet weights, uses Bottleneck blocks)
RESNETS = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, False),
    "resnet34": (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1, False),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1, True),
    "resnet101": (torchvision.models.resnet101, torchvision.models.ResNet101_Weights.IMAGENET1K_V1, True),
}

# output stride -> replace_stride_with_dilation flags for (layer2, layer3, layer4)
DILATION_FLAGS = {
    32: [False, False, False],
    16: [False, False, True],
    8: [False, True, True],
}


def dilate_layer(layer: nn.Sequential, previous_dilation: int, dilation: int) -> None:
    """Turn the stride-2 ResNet stage ``layer`` into a stride-1 stage with dilated 3x3 convs, in place.

    The first block's 3x3 convs get ``previous_dilation``, the other blocks' get ``dilation`` (padding =
    dilation keeps the size); the strided conv and the 1x1 shortcut conv get stride 1. Works for BasicBlock
    and Bottleneck: weights are untouched, only how the convolutions slide changes.
    """
    for index, block in enumerate(layer):
        d = previous_dilation if index == 0 else dilation
        for module in block.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)
                if module.kernel_size == (3, 3):
                    module.dilation = (d, d)
                    module.padding = (d, d)


class ResNetFeatures(nn.Module):
    """The convolutional part of a torchvision ResNet (no avgpool, no fc), returning two feature maps.

    ``forward(x: (N, 3, H, W)) -> (layer3 features, layer4 features)``; for ResNet-50/101 these have 1024 and
    2048 channels (256 and 512 for ResNet-18/34). layer4 has the output stride ``s`` (size ``ceil(H / s)``),
    layer3 has stride 16, or 8 when ``s`` = 8.

    Parameter names are torchvision's (``conv1.weight``, ``layer1.0.conv1.weight``, ...), so an ImageNet
    ResNet state dict without its ``fc.*`` entries loads as is.
    """

    def __init__(self, resnet: torchvision.models.ResNet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.layer3_channels = _out_channels(resnet.layer3)
        self.layer4_channels = _out_channels(resnet.layer4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        layer3 = self.layer3(self.layer2(self.layer1(x)))
        return layer3, self.layer4(layer3)


def _out_channels(layer: nn.Sequential) -> int:
    """Channels a ResNet stage outputs: those of its last block's last batch norm."""
    norms = [m for m in layer[-1].modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


def resnet_features(
    name: str = "resnet50", output_stride: int = 8, pretrained: bool = False, model_name: str = "deeplabv3"
) -> ResNetFeatures:
    """A dilated torchvision ResNet as a :class:`ResNetFeatures`.

    Args:
        name: one of ``RESNETS`` (resnet18, resnet34, resnet50, resnet101).
        output_stride: 8, 16 or 32 (see the module docstring).
        pretrained: load torchvision's ImageNet weights (``IMAGENET1K_V1``); offline and not cached this
            raises :class:`~segkit.models.pretrained.PretrainedWeightsUnavailable`.
        model_name: the model being built, for error messages.
    """
    if name not in RESNETS:
        raise ValueError(f"{model_name}: backbone={name!r} is not one of {sorted(RESNETS)}")
    if output_stride not in DILATION_FLAGS:
        raise ValueError(
            f"{model_name}: output_stride={output_stride!r} is not one of {sorted(DILATION_FLAGS)}"
        )
    constructor, imagenet_weights, is_bottleneck = RESNETS[name]
    flags = DILATION_FLAGS[output_stride]
    state_dict = None
    if pretrained:  # fetch first: fail before spending time on building the network
        state_dict = torchvision_weights_state_dict(
            imagenet_weights,
            what=f"ImageNet weights for the {name} backbone of {model_name!r}",
            instead="pretrained_backbone=False",
        )
    if is_bottleneck:
        resnet = constructor(weights=None, replace_stride_with_dilation=flags)
    else:
        resnet = constructor(weights=None)
        dilation = 1
        for layer, dilate in zip((resnet.layer2, resnet.layer3, resnet.layer4), flags, strict=True):
            if dilate:
                dilate_layer(layer, previous_dilation=dilation, dilation=dilation * 2)
                dilation *= 2
    if state_dict is not None:
        resnet.load_state_dict(state_dict)
    return ResNetFeatures(resnet)
