"""segkit.models: segmentation networks behind one function, ``build_model(name, num_classes, **options)``.

Every model maps images ``(N, 3, H, W) float`` to logits ``(N, num_classes, H, W) float`` at the input
resolution. A model built with an auxiliary head (``aux=True``) returns ``{"out": logits, "aux": aux_logits}``
while training and the plain logits in eval mode, so one loss wrapper and one predict function serve all.

Registry (``MODELS``, name -> constructor) and options (besides ``num_classes``):

    unet           UNet from scratch (unet.py): base_channels=64, depth=4,
                   upsampling="transposed"|"bilinear", in_channels=3
    deeplabv3      DeepLabV3 from scratch (deeplabv3.py): output_stride=8|16, aux=False,
                   backbone="resnet50"|"resnet101"|"resnet18"|"resnet34", pretrained_backbone=False,
                   pretrained=False
    fcn            torchvision FCN (zoo.py): backbone="resnet50"|"resnet101", aux=False,
                   pretrained_backbone=False, pretrained=False
    smp_unet, unetplusplus, linknet, fpn, pspnet, deeplabv3plus
                   segmentation_models_pytorch (zoo.py): encoder_name="resnet34", encoder_weights=None,
                   plus the smp class's own arguments (encoder_depth, decoder_channels, ...)
    encdec         EncDecMeta's encoder-decoder search space (encdec.py): D_blocks, B_blocks, U_blocks of
                   (op, dilation) layers, base_channels=16, dropout=0.0
    deep_prior     DP-NAS deep prior (segkit/search/deep_prior/model.py): a random, frozen encoder given
                   by an architecture string plus a trained 1x1 head: arch=..., seed=0, freeze_encoder=True
    autodeeplab    a network decoded by the Auto-DeepLab search (segkit/search/autodeeplab/decode.py):
                   genotype (blocks of two (op, state) pairs), path (output strides of the layers),
                   filter_multiplier=8, stem_channels=32, aspp_channels=32, aspp_rate_base=96

Attributes every model has:
    output_stride         input size / size of the coarsest features (UNet: 2^depth; DeepLabV3: 8 or 16;
                          FCN: 8; smp: the encoder's, usually 32). Multiples of it need no padding.
    last_layer_prefixes   parameter-name prefixes (with the trailing dot) of the final logits conv(s), for
                          DeepLab's larger learning rate on the last layers: ``name.startswith(prefixes)``.
Pretrained feature extractors live under ``backbone.`` (DeepLabV3, FCN; torchvision names) or ``encoder.``
(smp).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from segkit.search.deep_prior.model import deep_prior

from .deeplabv3 import DeepLabV3, load_torchvision_state_dict
from .encdec import EncDec
from .pretrained import PretrainedWeightsUnavailable
from .unet import UNet
from .zoo import deeplabv3plus, fcn, fpn, linknet, pspnet, smp_unet, unetplusplus


def autodeeplab(genotype, path, num_classes: int = 21, filter_multiplier: int = 8, stem_channels: int = 32,
                aspp_channels: int = 32, aspp_rate_base: int = 96) -> nn.Module:
    """The plain network that an Auto-DeepLab search decoded (see segkit.search.autodeeplab.decode)."""
    # Imported here, not at the top: segkit.search.autodeeplab itself imports segkit.models (for ASPP).
    from segkit.search.autodeeplab.decode import AutoDeepLab

    return AutoDeepLab(genotype, path, num_classes=num_classes, filter_multiplier=filter_multiplier,
                       stem_channels=stem_channels, aspp_channels=aspp_channels,
                       aspp_rate_base=aspp_rate_base)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "deeplabv3": DeepLabV3,
    "fcn": fcn,
    "smp_unet": smp_unet,
    "unetplusplus": unetplusplus,
    "linknet": linknet,
    "fpn": fpn,
    "pspnet": pspnet,
    "deeplabv3plus": deeplabv3plus,
    "encdec": EncDec,
    "deep_prior": deep_prior,  # random frozen encoder + linear head (segkit/search/deep_prior/model.py)
    "autodeeplab": autodeeplab,
}


def model_options(name: str) -> list[str]:
    """The keyword options ``build_model(name, ...)`` takes explicitly (besides ``num_classes``)."""
    parameters = inspect.signature(MODELS[name]).parameters.values()
    return [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "num_classes"]


def build_model(name: str, num_classes: int = 21, **options) -> nn.Module:
    """Build the model registered as ``name`` in ``MODELS`` with ``num_classes`` output channels.

    Raises:
        ValueError: unknown name (the message lists the known ones), or num_classes not a positive int.
        TypeError: an option the model does not take (the message names it and lists those it takes).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
    constructor = MODELS[name]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(constructor).parameters.values())
    if not takes_any:  # smp models check their extra options themselves (zoo.smp_model)
        unknown = sorted(set(options) - set(model_options(name)))
        if unknown:
            raise TypeError(
                f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(model_options(name))}"
            )
    return constructor(num_classes=num_classes, **options)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if ``trainable_only``).

    Buffers such as batch-norm running statistics are not parameters and are not counted.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODELS",
    "DeepLabV3",
    "PretrainedWeightsUnavailable",
    "UNet",
    "build_model",
    "count_parameters",
    "load_torchvision_state_dict",
    "model_options",
]
