"""DeepLabV3 against torchvision: parameter counts, identical outputs after loading torchvision's weights
(eval and train mode, output stride 8 and 16), and the stride-to-dilation conversion used for ResNet-18/34."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from segkit.models import DeepLabV3, build_model, count_parameters, load_torchvision_state_dict
from segkit.models.backbones import dilate_layer

# torchvision's documented numbers for deeplabv3_resnet50, 21 classes.
PUBLISHED_PARAMS_WITHOUT_AUX = 39_638_869
PUBLISHED_PARAMS_WITH_AUX = 42_004_074



def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so that loading them wrongly shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.1, generator=generator)


@pytest.fixture(scope="module")
def torchvision_with_aux():
    torch.manual_seed(0)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    _randomise_batch_norms(model)
    return model.eval()


@pytest.fixture(scope="module")
def segkit_with_aux(torchvision_with_aux):
    model = build_model("deeplabv3", num_classes=21, aux=True)
    load_torchvision_state_dict(model, torchvision_with_aux.state_dict())
    return model.eval()


def test_parameter_counts_match_torchvision(torchvision_with_aux, segkit_with_aux):
    tv_count = count_parameters(torchvision_with_aux)
    assert tv_count == PUBLISHED_PARAMS_WITH_AUX == DeepLabV3_ResNet50_Weights.DEFAULT.meta["num_params"]
    assert count_parameters(segkit_with_aux) == tv_count

    tv_without_aux = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)
    ours_without_aux = build_model("deeplabv3", num_classes=21)
    assert count_parameters(tv_without_aux) == PUBLISHED_PARAMS_WITHOUT_AUX
    assert count_parameters(ours_without_aux) == PUBLISHED_PARAMS_WITHOUT_AUX
    # Same tensors, too, not just the same total.
    ours_shapes = sorted(t.shape for t in ours_without_aux.state_dict().values())
    assert ours_shapes == sorted(t.shape for t in tv_without_aux.state_dict().values())


def test_eval_output_equals_torchvision(torchvision_with_aux, segkit_with_aux):
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torchvision_with_aux(x)["out"]
        ours = segkit_with_aux(x)
    assert isinstance(ours, torch.Tensor)  # eval mode: a plain tensor even with the aux head
    assert ours.shape == (1, 21, 65, 65)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not two near-zero maps
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)

    # A model without the aux head takes the same dict (aux entries dropped) and gives the same logits.
    without_aux = build_model("deeplabv3", num_classes=21)
    load_torchvision_state_dict(without_aux, torchvision_with_aux.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(without_aux.eval()(x), expected, rtol=0, atol=1e-5)


def test_train_output_is_a_dict_equal_to_torchvision(torchvision_with_aux, segkit_with_aux):
    tv_model, ours = copy.deepcopy(torchvision_with_aux).train(), copy.deepcopy(segkit_with_aux).train()
    x = torch.randn(2, 3, 49, 57, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)  # same dropout masks: both apply the main head's dropout first, then the aux head's
    expected = tv_model(x)
    torch.manual_seed(3)
    ours = ours(x)
    assert isinstance(ours, dict) and set(ours) == {"out", "aux"}
    for key in ("out", "aux"):
        assert ours[key].shape == (2, 21, 49, 57)
        torch.testing.assert_close(ours[key], expected[key], rtol=0, atol=1e-5)


def test_output_stride_16_equals_torchvision_built_with_rates_6_12_18(torchvision_with_aux):
    backbone = torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    reference = torchvision.models.segmentation.DeepLabV3(
        torchvision.models._utils.IntermediateLayerGetter(backbone, return_layers={"layer4": "out"}),
        DeepLabHead(2048, 21, atrous_rates=(6, 12, 18)),
    )
    state = torchvision_with_aux.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    reference.load_state_dict(state)
    ours = build_model("deeplabv3", num_classes=21, output_stride=16)
    load_torchvision_state_dict(ours, state)
    assert ours.output_stride == 16
    assert [branch.conv.dilation for branch in ours.aspp.atrous] == [(6, 6), (12, 12), (18, 18)]
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x)["out"], rtol=0, atol=1e-5)


def _tiny_resnet(block, dilation_flags=None):
    return ResNet(block, [2, 2, 2, 2], replace_stride_with_dilation=dilation_flags)


def _through_layer4(resnet, x):
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    return resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(x))))


@pytest.mark.parametrize(("flags", "stride"), [([False, True, True], 8), ([False, False, True], 16)])
def test_dilate_layer_matches_torchvision_replace_stride_with_dilation(flags, stride):
    torch.manual_seed(5)
    reference = _tiny_resnet(Bottleneck, flags)
    converted = _tiny_resnet(Bottleneck)
    dilation = 1
    for layer, dilate in zip((converted.layer2, converted.layer3, converted.layer4), flags, strict=True):
        if dilate:
            dilate_layer(layer, previous_dilation=dilation, dilation=dilation * 2)
            dilation *= 2
    _randomise_batch_norms(reference)
    converted.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = _through_layer4(reference.eval(), x)
        ours = _through_layer4(converted.eval(), x)
    assert expected.shape[-1] == -(-65 // stride)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_basicblock_backbone_is_dilated(output_stride):
    """torchvision refuses dilation for BasicBlock; our conversion gives ResNet-18 the same strides."""
    with pytest.raises(NotImplementedError):
        _tiny_resnet(BasicBlock, [False, True, True])
    options = dict(backbone="resnet18", output_stride=output_stride, aux=True)
    model = build_model("deeplabv3", num_classes=4, **options)
    assert model.backbone.layer4_channels == 512 and model.aux_classifier.conv.in_channels == 256
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        layer3, layer4 = model.eval().backbone(x)
        logits = model(x)
    # Both layer3 and layer4 have the output stride (8: layer3 and layer4 dilated; 16: layer4 dilated).
    assert layer3.shape[-2:] == layer4.shape[-2:] == (-(-65 // output_stride),) * 2
    assert logits.shape == (2, 4, 65, 65)
    model.train()
    out = model(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 4, 65, 65)


def test_last_layer_prefixes_and_names():
    model = DeepLabV3(num_classes=5, backbone="resnet18", aux=True)
    last = [name for name, _ in model.named_parameters() if name.startswith(model.last_layer_prefixes)]
    assert last == ["classifier.weight", "classifier.bias",
                    "aux_classifier.classifier.weight", "aux_classifier.classifier.bias"]
    assert model.classifier.weight.shape == (5, 256, 1, 1)
    resnet18_names = {n for n in torchvision.models.resnet18().state_dict() if not n.startswith("fc.")}
    backbone_names = {n.removeprefix("backbone.") for n in model.state_dict() if n.startswith("backbone.")}
    assert backbone_names == resnet18_names


def test_loading_errors():
    model = build_model("deeplabv3", num_classes=21, backbone="resnet18", aux=True)
    with pytest.raises(ValueError, match="aux"):
        load_torchvision_state_dict(model, {"backbone.conv1.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="no segkit name"):
        load_torchvision_state_dict(model, {"head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="output_stride=4"):
        build_model("deeplabv3", output_stride=4)
    with pytest.raises(ValueError, match="backbone='resnet152'"):
        build_model("deeplabv3", backbone="resnet152")
    with pytest.raises(ValueError, match="num_classes=21"):
        build_model("deeplabv3", num_classes=3, pretrained=True)


@pytest.mark.parametrize("output_stride, rates", [(8, (12, 24, 36)), (16, (6, 12, 18))])
def test_aspp_rates_are_the_papers(output_stride, rates):
    """The rates themselves (and the padding that keeps the size): DeepLabV3's 6/12/18 at output stride 16,
    doubled to 12/24/36 at output stride 8."""
    model = build_model("deeplabv3", num_classes=21, output_stride=output_stride, backbone="resnet18")
    convs = [branch.conv for branch in model.aspp.atrous]
    assert [conv.dilation for conv in convs] == [(rate, rate) for rate in rates]
    assert [conv.padding for conv in convs] == [(rate, rate) for rate in rates]


def test_output_stride_8_equals_torchvision_where_every_atrous_tap_sees_the_image(torchvision_with_aux,
                                                                                   segkit_with_aux):
    """At 65 x 65 the stride-8 features are 9 x 9, and a 3 x 3 kernel at rate 24 or 36 reads nothing but
    padding off its centre: any wrong rate would pass. At 321 x 321 the features are 41 x 41 and the taps of
    rate 36 lie 36 < 41 pixels from the centre, inside the map for most positions, so every rate matters;
    changing one rate changes the output (the check is sharp)."""
    x = torch.randn(1, 3, 321, 321, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = torchvision_with_aux(x)["out"]
        ours = segkit_with_aux(x)
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)
        wrong = copy.deepcopy(segkit_with_aux)
        wrong.aspp.atrous[2].conv.dilation = (30, 30)
        wrong.aspp.atrous[2].conv.padding = (30, 30)
        assert (wrong(x) - expected).abs().max() > 1e-3
