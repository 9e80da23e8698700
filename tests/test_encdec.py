"""EncDec (segkit.models.encdec): parameter counts written out by hand, the layer ops' kernels against
explicitly dilated kernels, the channel bookkeeping, and the whole forward pass against a re-computation with
torch.nn.functional from the parameter dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from segkit.config import validate_config
from segkit.models import build_model, count_parameters
from segkit.models.encdec import EncDec, make_layer


def conv_params(in_channels, out_channels, kh, kw, bias=False):
    return in_channels * out_channels * kh * kw + (out_channels if bias else 0)


def bn_params(channels):
    return 2 * channels  # weight and bias (running statistics are buffers)


def test_parameter_count_of_a_depth_one_network_by_hand():
    model = build_model("encdec", num_classes=3, D_blocks=[[("C", 2)]], B_blocks=[[("H", 1)]],
                        U_blocks=[[("O", 4)]], base_channels=2)
    expected = (
        conv_params(3, 2, 3, 3) + bn_params(2)  # down: stride-2 3x3, 3 -> c = 2
        + conv_params(2, 2, 3, 3) + bn_params(2)  # down layer C
        + conv_params(2, 2, 1, 3) + bn_params(2)  # bottleneck layer H
        + conv_params(4, 2, 1, 1) + bn_params(2)  # up fuse: concat(2 + 2) -> c (last up block)
        + conv_params(2, 2, 3, 3) + bn_params(2)  # up transposed 3x3
        + conv_params(2, 2, 1, 1) + bn_params(2)  # up layer O
        + conv_params(2, 3, 3, 3, bias=True)  # logits
    )
    assert expected == 231
    assert count_parameters(model) == expected


def test_parameter_count_of_a_depth_two_network_by_hand():
    model = build_model("encdec", num_classes=3, D_blocks=[[], []], B_blocks=[[("C", 1)], [("V", 3)]],
                        U_blocks=[[], [("C", 1)]], base_channels=2)
    expected = (
        conv_params(3, 2, 3, 3) + bn_params(2)  # D0: 3 -> c
        + conv_params(2, 4, 3, 3) + bn_params(4)  # D1: c -> 2c
        + conv_params(4, 4, 3, 3) + bn_params(4)  # bottleneck block 0: C at 2c
        + conv_params(4, 4, 3, 1) + bn_params(4)  # bottleneck block 1: V at 2c
        + conv_params(8, 2, 1, 1) + bn_params(2)  # U0 fuse: concat(2c bottleneck, 2c skip of D1) -> c
        + conv_params(2, 2, 3, 3) + bn_params(2)  # U0 transposed
        + conv_params(4, 2, 1, 1) + bn_params(2)  # U1 fuse: concat(c, c skip of D0) -> c
        + conv_params(2, 2, 3, 3) + bn_params(2)  # U1 transposed
        + conv_params(2, 2, 3, 3) + bn_params(2)  # U1 layer C
        + conv_params(2, 3, 3, 3, bias=True)
    )
    assert count_parameters(model) == expected


@pytest.mark.parametrize(
    ("op", "dilation", "kernel", "dilations", "padding"),
    [
        ("C", 1, (3, 3), (1, 1), (1, 1)),
        ("C", 3, (3, 3), (3, 3), (3, 3)),
        ("H", 2, (1, 3), (1, 2), (0, 2)),
        ("V", 4, (3, 1), (4, 1), (4, 0)),
        ("O", 5, (1, 1), (1, 1), (0, 0)),  # the dilation of a 1x1 conv is ignored
    ],
)
def test_layer_ops_kernels_dilations_and_padding(op, dilation, kernel, dilations, padding):
    layer = make_layer(op, dilation, channels=3, dropout=0.25)
    conv = layer.conv
    assert conv.kernel_size == kernel and conv.dilation == dilations and conv.padding == padding
    assert conv.stride == (1, 1) and conv.bias is None and conv.weight.shape == (3, 3, *kernel)
    assert [type(m).__name__ for m in layer] == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout"]
    assert layer.dropout.p == 0.25

    # The dilated kernel equals an undilated kernel with zeros between the taps, padded to keep the size.
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 9)
    (kh, kw), (dh, dw) = kernel, dilations
    spread = torch.zeros(3, 3, (kh - 1) * dh + 1, (kw - 1) * dw + 1)
    spread[:, :, ::dh, ::dw] = conv.weight.detach()
    expected = F.conv2d(x, spread, padding=((spread.shape[2] - 1) // 2, (spread.shape[3] - 1) // 2))
    assert expected.shape == x.shape
    torch.testing.assert_close(conv(x), expected)


def test_channel_bookkeeping_and_skip_resolutions():
    """Each up block gets the skip of its input's resolution and returns the encoder width one level up."""
    model = EncDec(num_classes=5, D_blocks=[[], [("C", 1)], []], B_blocks=[[("O", 1)]],
                   U_blocks=[[], [], [("H", 1)]], base_channels=4).eval()
    shapes = {}

    def remember(name):
        def hook(module, inputs, output):
            shapes[name] = ([tuple(t.shape[1:]) for t in inputs], tuple(output.shape[1:]))
        return hook

    for i, block in enumerate(model.down):
        block.register_forward_hook(remember(f"D{i}"))
    for i, block in enumerate(model.up):
        block.register_forward_hook(remember(f"U{i}"))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 16))
    assert logits.shape == (1, 5, 32, 16)
    assert [shapes[f"D{i}"][1] for i in range(3)] == [(4, 16, 8), (8, 8, 4), (16, 4, 2)]
    assert shapes["U0"] == ([(16, 4, 2), (16, 4, 2)], (8, 8, 4))  # bottleneck + skip of D2
    assert shapes["U1"] == ([(8, 8, 4), (8, 8, 4)], (4, 16, 8))  # + skip of D1
    assert shapes["U2"] == ([(4, 16, 8), (4, 16, 8)], (4, 32, 16))  # + skip of D0 -> c at full size
    assert model.up[0].fuse.conv.in_channels == 32 and model.up[2].fuse.conv.out_channels == 4


@pytest.mark.parametrize("size", [(16, 16), (32, 48), (8, 24)])
def test_output_has_the_input_resolution(size):
    model = build_model("encdec", num_classes=4, D_blocks=[[("H", 2)], [], [("V", 1)]], B_blocks=[[("C", 2)]],
                        U_blocks=[[("O", 1)], [], []], base_channels=2).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, *size))
    assert logits.shape == (2, 4, *size) and logits.dtype == torch.float32
    assert model.output_stride == 8


def test_other_sizes_are_zero_padded_and_cropped_back():
    torch.manual_seed(0)
    model = build_model("encdec", num_classes=4, D_blocks=[[], []], B_blocks=[[("C", 1)]],
                        U_blocks=[[], []], base_channels=2).eval()
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        logits = model(x)
        padded = torch.zeros(1, 3, 40, 48)
        padded[..., :37, :45] = x
        expected = model(padded)[..., :37, :45]
    torch.testing.assert_close(logits, expected)


def randomise_batch_norms(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0.0, 0.2, generator=generator)


def reference_forward(x, p):
    """The network of test_forward_matches_functional_ops written with F and the parameter dict `p`."""

    def bn_relu(y, name):
        y = F.batch_norm(y, p[f"{name}.bn.running_mean"], p[f"{name}.bn.running_var"],
                         p[f"{name}.bn.weight"], p[f"{name}.bn.bias"], training=False, eps=1e-5)
        return F.relu(y)

    def conv(y, name, **options):
        return bn_relu(F.conv2d(y, p[f"{name}.conv.weight"], **options), name)

    d0 = conv(x, "down.0.reduce", stride=2, padding=1)
    d0 = conv(d0, "down.0.layers.0", padding=(0, 2), dilation=(1, 2))  # H2
    d1 = conv(d0, "down.1.reduce", stride=2, padding=1)
    d1 = conv(d1, "down.1.layers.0", padding=(3, 0), dilation=(3, 1))  # V3
    b = conv(d1, "bottleneck.0.0", padding=2, dilation=2)  # C2
    b = conv(b, "bottleneck.1.0")  # O
    u = conv(torch.cat([b, d1], 1), "up.0.fuse")
    u = bn_relu(F.conv_transpose2d(u, p["up.0.up.conv.weight"], stride=2, padding=1, output_padding=1),
                "up.0.up")
    u = conv(u, "up.0.layers.0", padding=1)  # C1
    u = conv(torch.cat([u, d0], 1), "up.1.fuse")
    u = bn_relu(F.conv_transpose2d(u, p["up.1.up.conv.weight"], stride=2, padding=1, output_padding=1),
                "up.1.up")
    return F.conv2d(u, p["classifier.weight"], p["classifier.bias"], padding=1)


def test_forward_matches_functional_ops():
    torch.manual_seed(0)
    model = build_model("encdec", num_classes=3, D_blocks=[[["H", 2]], [["V", 3]]],
                        B_blocks=[[["C", 2]], [["O", 7]]], U_blocks=[[["C", 1]], []], base_channels=3,
                        dropout=0.3)
    randomise_batch_norms(model)
    model.eval()  # dropout off, batch norm with its running statistics
    x = torch.randn(2, 3, 16, 12)
    parameters = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(x, parameters))


def test_dropout_rate_applies_to_every_layer_and_only_in_training():
    model = build_model("encdec", num_classes=3, D_blocks=[[("C", 1)]], B_blocks=[[("C", 1)]],
                        U_blocks=[[("C", 1)]], base_channels=4, dropout=0.5)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    assert len(dropouts) == len(convs) - 1 == 6 and all(m.p == 0.5 for m in dropouts)
    x = torch.randn(2, 3, 8, 8)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_last_layer_prefixes_select_the_logits_conv():
    model = build_model("encdec", num_classes=6, D_blocks=[[]], B_blocks=[[("C", 1)]], U_blocks=[[]],
                        base_channels=2)
    selected = [p for n, p in model.named_parameters() if n.startswith(model.last_layer_prefixes)]
    assert selected == [model.classifier.weight, model.classifier.bias]
    assert model.classifier.out_channels == 6 and model.classifier.kernel_size == (3, 3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"D_blocks": [[], []], "U_blocks": [[]]},
         "U_blocks: expected as many upsampling blocks as D_blocks (2)"),
        ({"B_blocks": []}, "B_blocks: at least one bottleneck block is needed"),
        ({"B_blocks": [[("C", 1)], []]}, "B_blocks.1: a bottleneck block needs at least one layer"),
        ({"D_blocks": [[("C", 1), ("X", 1)]]}, "D_blocks.0.1: unknown op 'X'; ops are C, H, V, O"),
        ({"U_blocks": [[("H", 0)]]}, "U_blocks.0.0: the dilation must be an integer >= 1, got 0"),
        ({"U_blocks": [[("H", 1.5)]]}, "U_blocks.0.0: the dilation must be an integer >= 1, got 1.5"),
        ({"D_blocks": [[("C",)]]}, "D_blocks.0.0: expected a layer (op, dilation)"),
        ({"D_blocks": []}, "D_blocks: at least one downsampling block is needed"),
        ({"base_channels": 0}, "base_channels: expected an integer >= 1, got 0"),
        ({"dropout": 1.0}, "dropout: expected a number in [0, 1), got 1.0"),
    ],
)
def test_bad_architectures_are_refused_with_the_key_path(options, message):
    arguments = {"D_blocks": [[]], "B_blocks": [[("C", 1)]], "U_blocks": [[]], **options}
    with pytest.raises(ValueError) as error:
        build_model("encdec", num_classes=2, **arguments)
    assert message in str(error.value)


def test_built_from_a_yaml_config_like_any_model():
    from segkit.build import model_from_config

    config = validate_config({"model": {"name": "encdec", "options": {
        "D_blocks": [[["C", 1]], []], "B_blocks": [[["H", 2]]], "U_blocks": [[], [["O", 1]]],
        "base_channels": 4, "dropout": 0.1}}})
    model = model_from_config(config, num_classes=21)
    direct = EncDec(21, [[("C", 1)], []], [[("H", 2)]], [[], [("O", 1)]], base_channels=4, dropout=0.1)
    assert str(model) == str(direct)
    assert model.architecture == "D: C1 / - | B: H2 | U: - / O"
