"""segkit.models: segmentation networks behind one function, ``build_model(name, num_classes, **options)``.

Every model maps images ``(N, 3, H, W) float`` to logits ``(N, num_classes, H, W) float`` at the input
resolution. A model built with an auxiliary head (``aux=True``) returns ``{"out": logits, "aux": aux_logits}``
while training and the plain logits in eval mode, so one loss wrapper and one evaluation function serve all.

Registry (``MODELS``, a segkit.registry.Registry: name -> constructor) and options (besides ``num_classes``):

    unet           UNet from scratch (unet.py): base_channels=64, depth=4,
                   upsampling="transposed"|"bilinear", in_channels=3
    deeplabv3      DeepLabV3 from scratch (deeplabv3.py): output_stride=8|16, aux=False,
                   backbone="resnet50"|"resnet101"|"resnet18"|"resnet34", pretrained_backbone=False,
                   pretrained=False
    fcn            torchvision FCN (fcn.py): backbone="resnet50"|"resnet101", aux=False,
                   pretrained_backbone=False, pretrained=False
    smp_unet, unetplusplus, linknet, fpn, pspnet, deeplabv3plus
                   segmentation_models_pytorch (smp_models.py): encoder_name="resnet34", encoder_weights=None,
                   plus the smp class's own arguments (encoder_depth, decoder_channels, ...)
    encdec         EncDecMeta's encoder-decoder search space (encdec.py): D_blocks, B_blocks, U_blocks of
                   (op, dilation) layers, base_channels=16, dropout=0.0
    deep_prior     DP-NAS deep prior (deep_prior/network.py): a random, frozen encoder given by an
                   architecture string plus a trained 1x1 head: arch=..., seed=0, freeze_encoder=True
    autodeeplab    the network an Auto-DeepLab search decodes to (autodeeplab/network.py): genotype (blocks of
                   two (op, state) pairs), path (output strides of the layers), filter_multiplier=8,
                   stem_channels=32, aspp_channels=32, aspp_rate_base=96

Each entry is imported when a model of it is first built: smp and timm load only for the smp models.

Attributes every model has:
    output_stride         input size / size of the coarsest features (UNet: 2^depth; DeepLabV3: 8 or 16;
                          FCN: 8; smp: the encoder's, usually 32). Multiples of it need no padding.
    last_layer_prefixes   parameter-name prefixes (with the trailing dot) of the final logits conv(s), for
                          DeepLab's larger learning rate on the last layers: ``name.startswith(prefixes)``.
Pretrained feature extractors live under ``backbone.`` (DeepLabV3, FCN; torchvision names) or ``encoder.``
(smp).

This package is the ground floor for networks: nothing here imports the search, the trainer or the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segkit.lazy import lazy_exports
from segkit.registry import Registry, RegistryError

if TYPE_CHECKING:
    from torch import nn

MODELS = Registry("model", {
    "unet": "segkit.models.unet:UNet",
    "deeplabv3": "segkit.models.deeplabv3:DeepLabV3",
    "fcn": "segkit.models.fcn:fcn",
    "smp_unet": "segkit.models.smp_models:smp_unet",
    "unetplusplus": "segkit.models.smp_models:unetplusplus",
    "linknet": "segkit.models.smp_models:linknet",
    "fpn": "segkit.models.smp_models:fpn",
    "pspnet": "segkit.models.smp_models:pspnet",
    "deeplabv3plus": "segkit.models.smp_models:deeplabv3plus",
    "encdec": "segkit.models.encdec:EncDec",
    "deep_prior": "segkit.models.deep_prior.network:deep_prior",
    "autodeeplab": "segkit.models.autodeeplab.network:AutoDeepLab",
})

__getattr__, __dir__ = lazy_exports(__name__, {
    "UNet": ".unet",
    "DeepLabV3": ".deeplabv3",
    "load_torchvision_state_dict": ".deeplabv3",
    "EncDec": ".encdec",
    "PretrainedWeightsUnavailable": ".pretrained",
})


def model_options(name: str) -> list[str]:
    """The keyword options ``build_model(name, ...)`` takes explicitly (besides ``num_classes``)."""
    return MODELS.options(name, skip=("num_classes",))


def build_model(name: str, num_classes: int = 21, **options) -> nn.Module:
    """Build the model registered as ``name`` in ``MODELS`` with ``num_classes`` output channels.

    Raises RegistryError (a ValueError) for an unknown name or an option the model does not take, and
    ValueError when num_classes is not a positive int.
    """
    MODELS.check_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
    return MODELS.build(name, num_classes=num_classes, skip=("num_classes",), **options)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if ``trainable_only``).

    Buffers such as batch-norm running statistics are not parameters and are not counted.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODELS",
    "DeepLabV3",
    "EncDec",
    "PretrainedWeightsUnavailable",
    "RegistryError",
    "UNet",
    "build_model",
    "count_parameters",
    "load_torchvision_state_dict",
    "model_options",
]
