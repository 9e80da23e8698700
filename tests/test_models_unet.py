"""UNet: published parameter counts, output size for any input size, and values against a functional
re-computation written with torch.nn.functional only (explicit zero canvas for the padding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segkit.models import UNet, build_model, count_parameters

# Published counts of the common PyTorch UNet (n_channels=3), 21 classes, 64 base channels, depth 4.
UNET_PARAMS_TRANSPOSED = 31_038_933
UNET_PARAMS_BILINEAR = 17_264_277



@pytest.mark.parametrize(
    ("upsampling", "expected"), [("transposed", UNET_PARAMS_TRANSPOSED), ("bilinear", UNET_PARAMS_BILINEAR)]
)
def test_canonical_parameter_counts(upsampling, expected):
    model = build_model("unet", num_classes=21, upsampling=upsampling)
    assert count_parameters(model) == expected
    by_hand = sum(p.numel() for p in model.parameters())
    assert by_hand == expected


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
@pytest.mark.parametrize("size", [(64, 64), (65, 65), (97, 31), (33, 47), (16, 16)])
def test_output_size_equals_input_size(upsampling, size):
    torch.manual_seed(0)
    model = UNet(num_classes=5, base_channels=4, depth=4, upsampling=upsampling).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 5, *size)
    assert logits.dtype == torch.float32


def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.2, generator=generator)


def _reference_unet(x, p, depth, bilinear):
    """UNet forward from the parameter dict ``p`` with functional ops, eval-mode batch norm."""

    def conv_bn_relu(y, prefix):
        y = F.conv2d(y, p[prefix + "weight"], padding=1)
        bn = prefix[:-2] + str(int(prefix[-2]) + 1) + "."  # conv at index k, its batch norm at k + 1
        y = F.batch_norm(y, p[bn + "running_mean"], p[bn + "running_var"], p[bn + "weight"], p[bn + "bias"],
                         training=False, eps=1e-5)
        return F.relu(y)

    def double_conv(y, prefix):
        return conv_bn_relu(conv_bn_relu(y, prefix + "0."), prefix + "3.")

    features = [double_conv(x, "stem.")]
    for level in range(depth):
        features.append(double_conv(F.max_pool2d(features[-1], 2), f"downs.{level}.1."))
    y = features.pop()
    for step in range(depth):
        skip = features.pop()
        if bilinear:
            up = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            weight, bias = p[f"ups.{step}.upsample.weight"], p[f"ups.{step}.upsample.bias"]
            up = F.conv_transpose2d(y, weight, bias, stride=2)
        # Place the upsampled map on a zero canvas of the skip's size, offset by half the difference.
        canvas = torch.zeros(up.shape[0], up.shape[1], skip.shape[2], skip.shape[3])
        top = (skip.shape[2] - up.shape[2]) // 2
        left = (skip.shape[3] - up.shape[3]) // 2
        canvas[:, :, top : top + up.shape[2], left : left + up.shape[3]] = up
        y = double_conv(torch.cat([skip, canvas], dim=1), f"ups.{step}.conv.")
    return F.conv2d(y, p["classifier.weight"], p["classifier.bias"])


@pytest.mark.parametrize("upsampling", ["transposed", "bilinear"])
@pytest.mark.parametrize(("depth", "size"), [(1, (5, 7)), (2, (11, 13)), (3, (19, 26))])
def test_forward_matches_functional_reference(upsampling, depth, size):
    torch.manual_seed(1)
    model = UNet(num_classes=3, base_channels=2, depth=depth, upsampling=upsampling)
    _randomise_batch_norms(model)
    model.eval()
    x = torch.randn(2, 3, *size)
    params = {name: t.detach() for name, t in model.state_dict().items()}
    with torch.no_grad():
        ours = model(x)
        expected = _reference_unet(x, params, depth, bilinear=upsampling == "bilinear")
    assert ours.shape == expected.shape == (2, 3, *size)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_bilinear_mode_halves_the_bottleneck():
    model = UNet(num_classes=21, base_channels=64, depth=4, upsampling="bilinear")
    bottleneck_conv = model.downs[-1][1][3]
    assert bottleneck_conv.out_channels == 512  # 1024 / 2
    transposed = UNet(num_classes=21, base_channels=64, depth=4)
    assert transposed.downs[-1][1][3].out_channels == 1024


def test_attributes_and_errors():
    model = UNet(num_classes=4, base_channels=4, depth=3)
    assert model.output_stride == 8
    last = [name for name, _ in model.named_parameters() if name.startswith(model.last_layer_prefixes)]
    assert last == ["classifier.weight", "classifier.bias"]
    assert model.classifier.weight.shape == (4, 4, 1, 1)
    with pytest.raises(ValueError, match="upsampling='nearest'"):
        UNet(upsampling="nearest")
    with pytest.raises(ValueError, match="at least 8x8"):
        model(torch.randn(1, 3, 7, 20))
