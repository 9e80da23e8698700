"""FCN (Long et al. 2015) from torchvision, adapted to segkit's convention: ``forward(x: (N, 3, H, W) float)``
returns logits ``(N, num_classes, H, W)`` for any H, W; with an auxiliary head ``{"out": logits, "aux":
aux_logits}`` in training mode only.

The backbone is a dilated ResNet-50/101 (output stride 8). Parameter names are torchvision's
(``backbone.*``, ``classifier.*``, ``aux_classifier.*``), so its state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .backbones import RESNETS
from .pretrained import torchvision_weights_state_dict

FCN_BUILDERS = {
    "resnet50": (
        torchvision.models.segmentation.fcn_resnet50,
        torchvision.models.segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
    ),
    "resnet101": (
        torchvision.models.segmentation.fcn_resnet101,
        torchvision.models.segmentation.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
    ),
}


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model (FCN, DeepLabV3, ...) with segkit's output convention.

    torchvision's forward always returns ``OrderedDict(out=..., [aux=...])``; this one returns the logits
    tensor, or ``{"out", "aux"}`` when training with an aux head. Same children and parameter names as
    the wrapped model (``backbone``, ``classifier``, ``aux_classifier``).
    """

    def __init__(self, tv_model: nn.Module, output_stride: int):
        super().__init__()
        self.backbone = tv_model.backbone
        self.classifier = tv_model.classifier
        self.aux_classifier = tv_model.aux_classifier
        self.output_stride = output_stride
        last = f"{len(self.classifier) - 1}."
        self.last_layer_prefixes = ("classifier." + last,)
        if self.aux_classifier is not None:
            self.last_layer_prefixes += (f"aux_classifier.{len(self.aux_classifier) - 1}.",)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)  # OrderedDict: "out" = layer4, "aux" = layer3 (when there is an aux head)
        logits = self.classifier(features["out"])
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return logits
        aux_logits = self.aux_classifier(features["aux"])
        aux_logits = F.interpolate(aux_logits, size=size, mode="bilinear", align_corners=False)
        return {"out": logits, "aux": aux_logits}


def fcn(
    num_classes: int = 21,
    backbone: str = "resnet50",
    aux: bool = False,
    pretrained_backbone: bool = False,
    pretrained: bool = False,
) -> TorchvisionSegmentation:
    """torchvision's FCN-ResNet (``fcn_resnet50`` / ``fcn_resnet101``): dilated ResNet (output stride 8), then
    3x3 conv (2048 -> 512) -> BN -> ReLU -> dropout 0.1 -> 1x1 conv, upsampled bilinearly to the input size.

    Args:
        backbone: ``"resnet50"`` or ``"resnet101"``.
        aux: auxiliary FCN head on layer3 (training-time extra loss).
        pretrained_backbone: torchvision's ImageNet ResNet weights.
        pretrained: torchvision's whole-model weights trained on COCO with the VOC classes
            (``num_classes`` must be 21).
    """
    if backbone not in FCN_BUILDERS:
        raise ValueError(f"fcn: backbone={backbone!r} is not one of {sorted(FCN_BUILDERS)}")
    builder, coco_voc_weights = FCN_BUILDERS[backbone]
    state_dict, backbone_state_dict = None, None
    if pretrained:
        if num_classes != 21:
            raise ValueError(f"fcn: pretrained=True needs num_classes=21, got {num_classes}")
        state_dict = torchvision_weights_state_dict(
            coco_voc_weights,
            what=f"torchvision's COCO/VOC-label weights for fcn ({backbone})",
            instead="pretrained=False",
        )
    elif pretrained_backbone:
        backbone_state_dict = torchvision_weights_state_dict(
            RESNETS[backbone][1],
            what=f"ImageNet weights for the {backbone} backbone of 'fcn'",
            instead="pretrained_backbone=False",
        )
    tv_model = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    if state_dict is not None:
        if not aux:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("aux_classifier.")}
        tv_model.load_state_dict(state_dict)
    if backbone_state_dict is not None:
        without_fc = {k: v for k, v in backbone_state_dict.items() if not k.startswith("fc.")}
        tv_model.backbone.load_state_dict(without_fc)
    return TorchvisionSegmentation(tv_model, output_stride=8)
