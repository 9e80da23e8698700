"""segkit.hooks: captured intermediate outputs equal the same submodules called directly on the captured
inputs (the reference, computed by hand in each test), and the model computes bitwise the same with hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.hooks import capture_outputs, module_names
from segkit.models import UNet, build_model


@pytest.fixture(scope="module")
def deeplab():
    """A small DeepLabV3 (ResNet-18, output stride 16) with an aux head, in eval mode, random weights."""
    torch.manual_seed(0)
    model = build_model("deeplabv3", num_classes=3, backbone="resnet18", output_stride=16, aux=True)
    for module in model.modules():  # non-trivial BatchNorm statistics, so that every layer does something
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def no_hooks_left(model: nn.Module) -> bool:
    return all(not module._forward_hooks for module in model.modules())


ASPP_NAMES = ["aspp.branch_1x1", "aspp.atrous.0", "aspp.atrous.1", "aspp.atrous.2", "aspp.image_pooling"]


def test_aspp_branches_equal_the_branches_called_on_the_captured_features(deeplab):
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = deeplab(x)
        names = ["backbone.layer4", *ASPP_NAMES, "aspp.project", "aspp", "aux_classifier"]
        with capture_outputs(deeplab, names) as outputs:
            hooked = deeplab(x)
        assert torch.equal(hooked, plain)  # the hooks change nothing, not even the last bit
        assert no_hooks_left(deeplab)

        features = outputs["backbone.layer4"]
        assert features.shape == (2, 512, 6, 6)  # ResNet-18 layer4, 96 / 16
        assert torch.equal(features, deeplab.backbone(x)[1])
        branches = [outputs[name] for name in ASPP_NAMES]
        direct = [deeplab.aspp.branch_1x1(features), *(conv(features) for conv in deeplab.aspp.atrous),
                  deeplab.aspp.image_pooling(features)]
        for name, captured, expected in zip(ASPP_NAMES, branches, direct, strict=True):
            assert captured.shape == (2, 256, 6, 6), name
            assert torch.equal(captured, expected), name
        assert not torch.equal(branches[1], branches[2])  # different rates: different branches
        assert torch.equal(outputs["aspp.project"], deeplab.aspp.project(torch.cat(branches, dim=1)))
        # and the rest of the network, by hand, from the captured ASPP output gives the model's logits
        logits = deeplab.classifier(deeplab.head(outputs["aspp"]))
        assert torch.equal(F.interpolate(logits, size=(96, 96), mode="bilinear", align_corners=False), plain)
    assert "aux_classifier" not in outputs  # the aux head does not run in eval mode


def test_a_module_called_twice_gives_a_list_in_call_order(deeplab):
    """torchvision's BasicBlock calls its one ReLU module twice: after bn1, and after adding the shortcut."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture_outputs(deeplab, ["backbone.maxpool", "backbone.layer1.0.relu"]) as outputs:
        deeplab(x)
    block, block_input = deeplab.backbone.layer1[0], outputs["backbone.maxpool"]
    with torch.no_grad():
        first = F.relu(block.bn1(block.conv1(block_input)))
        second = F.relu(block.bn2(block.conv2(first)) + block_input)
    relu_outputs = outputs["backbone.layer1.0.relu"]
    assert isinstance(relu_outputs, list) and len(relu_outputs) == 2
    assert torch.equal(relu_outputs[0], first) and torch.equal(relu_outputs[1], second)


def test_tuple_outputs_and_two_forward_passes(deeplab):
    a, b = torch.randn(2, 1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), capture_outputs(deeplab, ["backbone", "backbone.layer3", "classifier"]) as outputs:
        deeplab(a)
        deeplab(b)
    with torch.no_grad():  # outside the block: these calls are not recorded
        expected_a, expected_b = deeplab.backbone(a), deeplab.backbone(b)
    first, second = outputs["backbone"]  # two calls: a list of the two (layer3, layer4) tuples
    assert isinstance(first, tuple) and len(first) == 2
    for captured, expected in [(first, expected_a), (second, expected_b)]:
        assert all(torch.equal(c, e) for c, e in zip(captured, expected, strict=True))
    assert torch.equal(outputs["backbone.layer3"][1], expected_b[0])
    assert len(outputs["classifier"]) == 2


def test_unet_outputs_are_copies_taken_before_in_place_relus():
    torch.manual_seed(0)
    model = UNet(num_classes=3, base_channels=4, depth=2).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    names = ["stem.1", "stem", "downs.1", "ups.0", "ups.1", "classifier"]
    with torch.no_grad():
        plain = model(x)
        with capture_outputs(model, names) as outputs:
            hooked = model(x)
        # stem.1 is a BatchNorm whose output the next ReLU(inplace=True) overwrites: the copy keeps it
        assert torch.equal(outputs["stem.1"], model.stem[1](model.stem[0](x)))
        assert (outputs["stem.1"] < 0).any() and (outputs["stem"] >= 0).all()
        skip0 = model.stem(x)
        skip1 = model.downs[0](skip0)
        bottleneck = model.downs[1](skip1)
        assert torch.equal(outputs["downs.1"], bottleneck)
        assert outputs["downs.1"].shape == (2, 16, 8, 8)
        up0 = model.ups[0](bottleneck, skip1)
        assert torch.equal(outputs["ups.0"], up0)
        assert torch.equal(outputs["ups.1"], model.ups[1](up0, skip0))
        assert torch.equal(outputs["classifier"], model.classifier(outputs["ups.1"]))
    assert torch.equal(hooked, plain)
    assert not outputs["classifier"].requires_grad


def test_hooks_are_removed_when_the_block_raises_and_other_hooks_are_kept():
    model = UNet(num_classes=3, base_channels=4, depth=2)
    own_hook = model.classifier.register_forward_hook(lambda module, inputs, output: None)
    with pytest.raises(ValueError, match="needs inputs of at least 4x4"):
        with capture_outputs(model, ["stem", "downs.0", "classifier"]):
            model(torch.randn(1, 3, 2, 2))  # too small for depth 2: the forward raises
    assert list(model.classifier._forward_hooks) == [own_hook.id]  # only the user's own hook is left
    own_hook.remove()
    assert no_hooks_left(model)


def test_unknown_names_fail_with_close_matches_before_any_hook(deeplab):
    message = r"no submodule named 'backbone.layer5'; did you mean.*'backbone.layer4'"
    with pytest.raises(ValueError, match=message):
        with capture_outputs(deeplab, ["aspp", "backbone.layer5"]):
            pass
    with pytest.raises(ValueError, match=r"'decoder'.*top-level modules are 'backbone', 'aspp', 'head'"):
        with capture_outputs(deeplab, "decoder"):
            pass
    assert no_hooks_left(deeplab)


def test_keep_grad_gives_the_tensor_in_the_graph(deeplab):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with capture_outputs(deeplab, "aspp", keep_grad=True) as outputs:
        logits = deeplab(x)
    features = outputs["aspp"]
    assert features.requires_grad
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), features)
    # reference: the rest of the network run by hand on a leaf copy of the features
    leaf = features.detach().requires_grad_()
    by_hand = F.interpolate(deeplab.classifier(deeplab.head(leaf)), size=(64, 64), mode="bilinear",
                            align_corners=False)
    (expected,) = torch.autograd.grad(by_hand[:, 1].sum(), leaf)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)


def test_module_names_by_depth(deeplab):
    children = [name for name, _ in deeplab.named_children()]
    assert module_names(deeplab, depth=1) == children == ["backbone", "aspp", "head", "classifier",
                                                          "aux_classifier"]
    two_levels = []
    for name, child in deeplab.named_children():
        two_levels += [name] + [f"{name}.{grandchild}" for grandchild, _ in child.named_children()]
    assert module_names(deeplab, depth=2) == two_levels
    assert "aspp.atrous" in two_levels and "backbone.layer4" in two_levels
    every = module_names(deeplab)
    assert len(every) == len(list(deeplab.modules())) - 1 and "backbone.layer1.0.relu" in every
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        module_names(deeplab, depth=0)
