"""The relatives: torchvision's FCN and the smp architectures give exactly what the original libraries give
(same weights, same outputs), with segkit's output convention and any input size."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torchvision.models.segmentation import FCN_ResNet50_Weights, fcn_resnet50

from segkit.models import build_model, count_parameters
from segkit.models.smp_models import SMP_ARCHITECTURES
from segkit.registry import RegistryError


def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.1, generator=generator)


def test_fcn_equals_torchvision_fcn_resnet50():
    reference = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    _randomise_batch_norms(reference)
    ours = build_model("fcn", num_classes=21, aux=True)
    ours.load_state_dict(reference.state_dict())  # strict: identical parameter names
    assert count_parameters(ours) == count_parameters(reference)
    assert count_parameters(ours) == FCN_ResNet50_Weights.DEFAULT.meta["num_params"]  # published: 35,322,218

    x = torch.randn(2, 3, 41, 53, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.eval()(x)
        logits = ours.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 21, 41, 53)
    torch.testing.assert_close(logits, expected["out"], rtol=0, atol=1e-5)

    reference.train()
    ours.train()
    torch.manual_seed(1)
    expected = reference(x)
    torch.manual_seed(1)
    out = ours(x)
    assert set(out) == {"out", "aux"}
    torch.testing.assert_close(out["out"], expected["out"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["aux"], expected["aux"], rtol=0, atol=1e-5)
    assert ours.last_layer_prefixes == ("classifier.4.", "aux_classifier.4.")
    assert ours.classifier[4].out_channels == 21 and ours.aux_classifier[4].out_channels == 21


SMP_CLASSES = {
    "smp_unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "linknet": smp.Linknet,
    "fpn": smp.FPN,
    "pspnet": smp.PSPNet,
    "deeplabv3plus": smp.DeepLabV3Plus,
}


def test_every_smp_architecture_is_covered():
    assert set(SMP_ARCHITECTURES) == set(SMP_CLASSES)


@pytest.mark.parametrize("name", sorted(SMP_CLASSES))
def test_smp_wrapper_equals_smp_model(name):
    torch.manual_seed(0)
    reference = SMP_CLASSES[name](encoder_name="resnet18", encoder_weights=None, classes=3)
    _randomise_batch_norms(reference)
    reference.eval()
    ours = build_model(name, num_classes=3, encoder_name="resnet18").eval()
    # strict loading: the same names (encoder., decoder., segmentation_head.)
    ours.load_state_dict(reference.state_dict())
    assert count_parameters(ours) == count_parameters(reference)

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 64, 96, generator=generator)  # multiples of 32: no padding, smp's own forward
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)

    # Any other size: smp either handles it (Unet) or we zero-pad bottom/right to the stride and crop.
    odd = torch.randn(1, 3, 50, 70, generator=generator)
    with torch.no_grad():
        logits = ours(odd)
        if reference.requires_divisible_input_shape:
            stride = reference.encoder.output_stride
            padded = torch.zeros(1, 3, -(-50 // stride) * stride, -(-70 // stride) * stride)
            padded[:, :, :50, :70] = odd
            expected = reference(padded)[:, :, :50, :70]
        else:
            expected = reference(odd)
    assert logits.shape == (1, 3, 50, 70)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_smp_options_pass_through_and_are_checked():
    model = build_model("fpn", num_classes=2, encoder_name="resnet18", encoder_depth=4, decoder_dropout=0.0)
    assert len(model.encoder.out_channels) == 5  # input + 4 stages
    assert model.output_stride == 16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 40, 40)).shape == (1, 2, 40, 40)
    with pytest.raises(RegistryError, match=r"'fpn' has no option 'decoder_channelz'.*decoder_pyramid"):
        build_model("fpn", encoder_name="resnet18", decoder_channelz=8)
    with pytest.raises(RegistryError, match="'activation' is set by segkit"):
        build_model("linknet", encoder_name="resnet18", activation="softmax")
    with pytest.raises(ValueError, match="unknown smp encoder 'resnet7'"):
        build_model("pspnet", encoder_name="resnet7")
    with pytest.raises(ValueError, match=r"encoder_weights='instagram'.*\['imagenet', 'ssl', 'swsl'\]"):
        build_model("pspnet", encoder_name="resnet18", encoder_weights="instagram")


def test_smp_train_mode_returns_a_tensor():
    model = build_model("smp_unet", num_classes=3, encoder_name="resnet18").train()
    logits = model(torch.randn(2, 3, 33, 35))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3, 33, 35)
    logits.sum().backward()
    assert model.encoder.conv1.weight.grad is not None
    assert F.softmax(logits, dim=1).shape == logits.shape
