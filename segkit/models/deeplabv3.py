"""DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation",
arXiv:1706.05587), written from scratch on a dilated torchvision ResNet.

    image (N, 3, H, W)
      -> dilated ResNet (backbones.py)       layer4 features (N, 2048, H/s, W/s), s = output stride 8 or 16
      -> ASPP                                 (N, 256, H/s, W/s)
           five parallel branches on the same features, each conv -> BN -> ReLU with 256 channels:
             1x1 conv | 3x3 conv rate r1 | 3x3 conv rate r2 | 3x3 conv rate r3 | image pooling
           (image pooling = global average -> 1x1 conv -> BN -> ReLU -> bilinear resize back)
           concatenated (1280 channels) -> 1x1 conv -> BN -> ReLU -> dropout 0.5
      -> head: 3x3 conv -> BN -> ReLU, classifier: 1x1 conv     logits (N, C, H/s, W/s)
      -> bilinear upsampling to (H, W)

Rates: (6, 12, 18) at output stride 16 (the paper's training setting: cheaper), doubled to (12, 24, 36) at
output stride 8 so that they cover the same part of the image. Optional auxiliary FCN head on layer3 (3x3 conv
to in/4 channels, BN, ReLU, dropout 0.1, 1x1 conv), used for an extra loss during training only.

With ResNet-50, output stride 8 and 21 classes this is exactly torchvision's
``deeplabv3_resnet50(num_classes=21[, aux_loss=True])``: 39,638,869 parameters (42,004,074 with the aux
head), and :func:`load_torchvision_state_dict` moves torchvision's weights over so both compute the same.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .backbones import resnet_features
from .pretrained import torchvision_weights_state_dict

ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
ASPP_CHANNELS = 256
# Whole-model weights torchvision trained on COCO with the 20 VOC classes (+ background), at output stride 8.
COCO_VOC_WEIGHTS = {
    "resnet50": torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
    "resnet101": torchvision.models.segmentation.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
}


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias, "same" padding) -> BatchNorm -> ReLU, with children named ``conv``, ``bn``, ``relu``."""
    padding = dilation * (kernel_size // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels), relu=nn.ReLU()))


class ImagePooling(nn.Module):
    """Image-level features: global average pool -> 1x1 conv -> BN -> ReLU -> resize back to (h, w).

    ``(N, in, h, w) -> (N, out, h, w)``; every position gets the same vector (the image's context).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.relu(self.bn(self.conv(self.pool(x))))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling: ``(N, in, h, w) -> (N, 256, h, w)`` (see the module docstring)."""

    def __init__(self, in_channels: int, atrous_rates: tuple[int, ...], out_channels: int = ASPP_CHANNELS):
        super().__init__()
        self.branch_1x1 = conv_bn_relu(in_channels, out_channels, 1)
        self.atrous = nn.ModuleList(conv_bn_relu(in_channels, out_channels, 3, rate) for rate in atrous_rates)
        self.image_pooling = ImagePooling(in_channels, out_channels)
        branches = 2 + len(atrous_rates)
        self.project = conv_bn_relu(branches * out_channels, out_channels, 1)
        self.project.add_module("dropout", nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch_1x1(x), *(conv(x) for conv in self.atrous), self.image_pooling(x)]
        return self.project(torch.cat(branches, dim=1))


class FCNHead(nn.Sequential):
    """Auxiliary head: 3x3 conv (in -> in/4, no bias) -> BN -> ReLU -> dropout 0.1 -> 1x1 conv -> classes.

    The layout of torchvision's ``FCNHead``. ``(N, in, h, w) -> (N, num_classes, h, w)``.
    """

    def __init__(self, in_channels: int, num_classes: int):
        inner = in_channels // 4
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_channels, inner, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(inner),
                relu=nn.ReLU(),
                dropout=nn.Dropout(0.1),
                classifier=nn.Conv2d(inner, num_classes, 1),
            )
        )


class DeepLabV3(nn.Module):
    """DeepLabV3 on a dilated ResNet.

    Args:
        num_classes: number of output channels (logits).
        backbone: ``"resnet50"`` (default), ``"resnet101"``, or ``"resnet18"`` / ``"resnet34"`` (small,
            for CPU experiments).
        output_stride: 8 (default, as torchvision; ASPP rates 12/24/36) or 16 (the DeepLab paper's training
            setting, several times cheaper; rates 6/12/18). The ratio of input size to the size of the
            features the ASPP sees.
        aux: add the auxiliary FCN head on layer3.
        pretrained_backbone: start the backbone from torchvision's ImageNet weights (needs them cached or a
            network connection; otherwise raises ``PretrainedWeightsUnavailable`` with what to do).
        pretrained: start the whole model from torchvision's weights trained on COCO with the VOC classes
            (``COCO_WITH_VOC_LABELS_V1``, trained at output stride 8, 66.4 mIoU on COCO val); resnet50 or
            resnet101 and ``num_classes=21`` only. Same network needs as ``pretrained_backbone``.

    ``forward(x: (N, 3, H, W) float)`` returns logits ``(N, num_classes, H, W)``; in training mode with
    ``aux=True`` it returns ``{"out": logits, "aux": aux_logits}`` instead (both at input size).

    Parameter names: ``backbone.*`` (torchvision ResNet names), ``aspp.*``, ``head.*``, ``classifier.*``,
    ``aux_classifier.*``. ``last_layer_prefixes`` names the 1x1 logits convs (``classifier.`` and
    ``aux_classifier.classifier.``).
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        output_stride: int = 8,
        aux: bool = False,
        pretrained_backbone: bool = False,
        pretrained: bool = False,
    ):
        super().__init__()
        if output_stride not in ATROUS_RATES:
            raise ValueError(
                f"deeplabv3: output_stride={output_stride!r} is not one of {sorted(ATROUS_RATES)}"
            )
        coco_voc_state_dict = None
        if pretrained:  # fetch first: fail before spending time on building the network
            if backbone not in COCO_VOC_WEIGHTS or num_classes != 21:
                raise ValueError(
                    f"deeplabv3: pretrained=True exists for backbone in {sorted(COCO_VOC_WEIGHTS)} with "
                    f"num_classes=21, got backbone={backbone!r}, num_classes={num_classes}"
                )
            coco_voc_state_dict = torchvision_weights_state_dict(
                COCO_VOC_WEIGHTS[backbone],
                what=f"torchvision's COCO/VOC-label weights for deeplabv3 ({backbone})",
                instead="pretrained=False",
            )
            pretrained_backbone = False  # the whole model's weights include the backbone's
        self.backbone = resnet_features(backbone, output_stride, pretrained=pretrained_backbone)
        self.aspp = ASPP(self.backbone.layer4_channels, ATROUS_RATES[output_stride])
        self.head = conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, 3)
        self.classifier = nn.Conv2d(ASPP_CHANNELS, num_classes, 1)
        self.aux_classifier = FCNHead(self.backbone.layer3_channels, num_classes) if aux else None

        self.output_stride = output_stride
        self.last_layer_prefixes = ("classifier.", "aux_classifier.classifier.") if aux else ("classifier.",)
        if coco_voc_state_dict is not None:
            load_torchvision_state_dict(self, coco_voc_state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        layer3, layer4 = self.backbone(x)
        logits = self.classifier(self.head(self.aspp(layer4)))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return logits
        aux_logits = self.aux_classifier(layer3)
        aux_logits = F.interpolate(aux_logits, size=size, mode="bilinear", align_corners=False)
        return {"out": logits, "aux": aux_logits}


# torchvision name prefix -> segkit name prefix. torchvision's DeepLabHead is a Sequential
# (ASPP, conv, bn, relu, conv) and its ASPP keeps the branches in one list: convs.0 = 1x1, convs.1-3 = atrous,
# convs.4 = pooling (child 0 is the pooling layer, without parameters).
TORCHVISION_TO_SEGKIT = [
    ("classifier.0.convs.0.0.", "aspp.branch_1x1.conv."),
    ("classifier.0.convs.0.1.", "aspp.branch_1x1.bn."),
    *[(f"classifier.0.convs.{i + 1}.0.", f"aspp.atrous.{i}.conv.") for i in range(3)],
    *[(f"classifier.0.convs.{i + 1}.1.", f"aspp.atrous.{i}.bn.") for i in range(3)],
    ("classifier.0.convs.4.1.", "aspp.image_pooling.conv."),
    ("classifier.0.convs.4.2.", "aspp.image_pooling.bn."),
    ("classifier.0.project.0.", "aspp.project.conv."),
    ("classifier.0.project.1.", "aspp.project.bn."),
    ("classifier.1.", "head.conv."),
    ("classifier.2.", "head.bn."),
    ("classifier.4.", "classifier."),
    ("aux_classifier.0.", "aux_classifier.conv."),
    ("aux_classifier.1.", "aux_classifier.bn."),
    ("aux_classifier.4.", "aux_classifier.classifier."),
    ("backbone.", "backbone."),
]


def torchvision_to_segkit_names(tv_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision DeepLabV3 state dict's entries to segkit's names (``TORCHVISION_TO_SEGKIT``)."""
    renamed = {}
    for name, tensor in tv_state_dict.items():
        matches = [(tv, ours) for tv, ours in TORCHVISION_TO_SEGKIT if name.startswith(tv)]
        if not matches:
            raise KeyError(f"torchvision DeepLabV3 state dict: no segkit name for entry {name!r}")
        tv_prefix, our_prefix = matches[0]
        renamed[our_prefix + name[len(tv_prefix) :]] = tensor
    return renamed


def load_torchvision_state_dict(model: DeepLabV3, tv_state_dict: dict[str, torch.Tensor]) -> None:
    """Load the weights of a torchvision DeepLabV3 (ResNet backbone) into a segkit :class:`DeepLabV3`.

    Use it as ``load_torchvision_state_dict(model, tv_model.state_dict())``. Both models must have the same
    backbone and number of classes (the output stride does not matter: dilation has no weights). When
    ``model`` has no aux head, torchvision's ``aux_classifier.*`` entries are dropped; when it has one,
    the torchvision dict must have them too. Afterwards, in eval mode, both models give the same logits.
    """
    renamed = torchvision_to_segkit_names(tv_state_dict)
    if model.aux_classifier is None:
        renamed = {name: t for name, t in renamed.items() if not name.startswith("aux_classifier.")}
    elif not any(name.startswith("aux_classifier.") for name in renamed):
        raise ValueError("the model has an aux head (aux=True) but the torchvision state dict has none")
    model.load_state_dict(renamed)
