"""The smp (segmentation_models_pytorch) architectures, adapted to segkit's convention: ``forward(x: (N, 3, H,
W) float)`` returns logits ``(N, num_classes, H, W)`` for any H, W.

With any smp encoder (``encoder_name``; ``tu-<timm name>`` for timm models): UNet ("smp_unet"), UNet++ (Zhou
et al. 2018), LinkNet (Chaurasia & Culurciello 2017), FPN (Kirillov et al. 2019, panoptic FPN head), PSPNet
(Zhao et al. 2017), DeepLabV3+ (Chen et al. 2018). Parameter names are smp's (``encoder.*``, ``decoder.*``,
``segmentation_head.*``), so its state dicts load unchanged.

smp and timm are imported by this module only, which segkit.models loads when one of these models is built.
"""

from __future__ import annotations

import inspect

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from segkit.registry import RegistryError, did_you_mean

from .pretrained import PretrainedWeightsUnavailable, check_smp_encoder_weights, hf_cache_at, hf_weights_dir


class SmpSegmentation(nn.Module):
    """An smp model that accepts any input size.

    Most smp architectures need H and W divisible by the encoder's output stride (32, or 8/16 for dilated
    encoders) and raise an error otherwise. Here such inputs are zero-padded at the bottom and right up to the
    next multiple, and the logits are cropped back to ``(H, W)``; inputs that are already multiples go through
    unchanged, so the result equals the smp model's own forward. (Zero is the mean colour after ImageNet
    normalisation.) Children: ``encoder``, ``decoder``, ``segmentation_head``, as in smp.
    """

    def __init__(self, smp_model: smp.base.SegmentationModel):
        super().__init__()
        self.encoder = smp_model.encoder
        self.decoder = smp_model.decoder
        self.segmentation_head = smp_model.segmentation_head
        self.architecture = type(smp_model).__name__
        self.output_stride = self.encoder.output_stride
        self.needs_divisible_input = smp_model.requires_divisible_input_shape
        self.last_layer_prefixes = ("segmentation_head.",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.needs_divisible_input:
            stride = self.output_stride
            x = F.pad(x, [0, (-width) % stride, 0, (-height) % stride])  # (left, right, top, bottom)
        features = self.encoder(x)  # list of feature maps, finest first
        logits = self.segmentation_head(self.decoder(features))
        return logits[..., :height, :width]


SMP_ARCHITECTURES = {
    "smp_unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "linknet": smp.Linknet,
    "fpn": smp.FPN,
    "pspnet": smp.PSPNet,
    "deeplabv3plus": smp.DeepLabV3Plus,
}
# smp arguments that segkit sets itself: models return raw logits and no classification head.
SMP_FIXED = {"encoder_name", "encoder_weights", "classes", "activation", "aux_params"}


def smp_model(
    name: str,
    num_classes: int = 21,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    **options,
) -> SmpSegmentation:
    """Build the smp architecture ``SMP_ARCHITECTURES[name]`` wrapped in :class:`SmpSegmentation`.

    Args:
        name: key of ``SMP_ARCHITECTURES``.
        encoder_name: any smp encoder (``smp.encoders.get_encoder_names()``) or ``"tu-<timm model>"``.
        encoder_weights: None (random, the default) or a pretrained set such as ``"imagenet"``; needs the
            weights cached or a network connection, else raises ``PretrainedWeightsUnavailable``.
        options: further arguments of the smp class (e.g. ``encoder_depth``, ``decoder_channels``); unknown
            ones raise ``RegistryError`` listing the accepted ones.
    """
    architecture = SMP_ARCHITECTURES[name]
    accepted = [
        p.name
        for p in inspect.signature(architecture).parameters.values()
        if p.kind is not p.VAR_KEYWORD and p.name not in SMP_FIXED
    ]
    for option in options:
        if option in SMP_FIXED:
            raise RegistryError(f"model {name!r}: option {option!r} is set by segkit (models return raw "
                                "logits)")
        if option not in accepted:
            own = ["encoder_name", "encoder_weights", *accepted]
            raise RegistryError(f"model {name!r} has no option {option!r}{did_you_mean(option, own)}; "
                                f"its options: {', '.join(own)}")
    if not encoder_name.startswith("tu-") and encoder_name not in smp.encoders.get_encoder_names():
        raise ValueError(
            f"{name}: unknown smp encoder {encoder_name!r}; see smp.encoders.get_encoder_names() "
            "(e.g. resnet18, resnet34, resnet50, mobilenet_v2, efficientnet-b0) or use 'tu-<timm model>'"
        )
    if encoder_weights is not None:  # fail fast offline, before smp's download retries
        check_smp_encoder_weights(encoder_name, encoder_weights, name)
    try:
        with hf_cache_at(hf_weights_dir()):  # smp's download goes to $SEGKIT_PRETRAINED when it is set
            model = architecture(
                encoder_name=encoder_name, encoder_weights=encoder_weights, classes=num_classes, **options
            )
    except OSError as err:  # download problems (huggingface_hub errors are OSErrors)
        if encoder_weights is None:
            raise
        raise PretrainedWeightsUnavailable(
            f"{name}: could not get the {encoder_weights!r} weights of smp encoder {encoder_name!r}: {err}. "
            "Use encoder_weights=None to start from random weights."
        ) from err
    return SmpSegmentation(model)


def smp_unet(num_classes=21, encoder_name="resnet34", encoder_weights=None, **options) -> SmpSegmentation:
    """smp's UNet: the encoder's feature maps decoded with upsampling + skip concatenation + convs."""
    return smp_model("smp_unet", num_classes, encoder_name, encoder_weights, **options)


def unetplusplus(num_classes=21, encoder_name="resnet34", encoder_weights=None, **options) -> SmpSegmentation:
    """UNet++ (Zhou et al. 2018): nested, densely connected skip pathways between encoder and decoder."""
    return smp_model("unetplusplus", num_classes, encoder_name, encoder_weights, **options)


def linknet(num_classes=21, encoder_name="resnet34", encoder_weights=None, **options) -> SmpSegmentation:
    """LinkNet (Chaurasia & Culurciello 2017): light decoder, skips are added instead of concatenated."""
    return smp_model("linknet", num_classes, encoder_name, encoder_weights, **options)


def fpn(num_classes=21, encoder_name="resnet34", encoder_weights=None, **options) -> SmpSegmentation:
    """FPN (Lin et al. 2017; head of Kirillov et al. 2019): a top-down feature pyramid merged at stride 4."""
    return smp_model("fpn", num_classes, encoder_name, encoder_weights, **options)


def pspnet(num_classes=21, encoder_name="resnet34", encoder_weights=None, **options) -> SmpSegmentation:
    """PSPNet (Zhao et al. 2017): pyramid pooling (1, 2, 3, 6 bins) on stride-8 features (encoder_depth 3)."""
    return smp_model("pspnet", num_classes, encoder_name, encoder_weights, **options)


def deeplabv3plus(
    num_classes=21, encoder_name="resnet34", encoder_weights=None, **options
) -> SmpSegmentation:
    """DeepLabV3+ (Chen et al. 2018): ASPP at stride 16 plus a decoder that adds stride-4 encoder features."""
    return smp_model("deeplabv3plus", num_classes, encoder_name, encoder_weights, **options)
