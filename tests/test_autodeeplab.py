"""Auto-DeepLab pieces: operators, cells, decoding (cell and Viterbi path), search and decoded networks.

References are independent of the code under test: operators recomposed from torch.nn.functional with a
hand-written batch norm, pooling values computed by hand, the Viterbi path against a brute force over every
path (probabilities from a numpy softmax), the relaxed cell against the decoded cell with the same weights,
and the networks against their recursion re-written here step by step.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.autodeeplab.network import resize
from segkit.optim import param_groups
from segkit.search.autodeeplab import (
    OP_NAMES,
    OPS,
    AutoDeepLab,
    AutoDeepLabSearch,
    DiscreteCell,
    MixedOp,
    SearchCell,
    beta_probabilities,
    cell_edges,
    decode_cell,
    decode_path,
    draw_path,
    format_genotype,
    num_edges,
    path_probability,
    search_space_size,
)

STRIDES = (4, 8, 16, 32)



def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm scales, shifts and running statistics, so that they matter in comparisons."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            n = layer.num_features
            layer.weight.data = 0.5 + torch.rand(n, generator=generator)
            layer.bias.data = torch.randn(n, generator=generator) * 0.3
            layer.running_mean = torch.randn(n, generator=generator) * 0.2
            layer.running_var = 0.5 + torch.rand(n, generator=generator)


def batchnorm_by_hand(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Training-mode batch norm: per channel (x - batch mean) / sqrt(biased batch variance + eps) * g + b."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def depthwise_pointwise_by_hand(x, depthwise: nn.Conv2d, pointwise: nn.Conv2d, dilation: int) -> torch.Tensor:
    k = depthwise.kernel_size[0]
    channels = x.shape[1]
    y = F.conv2d(F.relu(x), depthwise.weight, padding=dilation * (k // 2), dilation=dilation, groups=channels)
    return F.conv2d(y, pointwise.weight)


# ----------------------------------------------------------------------------------------------- operators


@pytest.mark.parametrize("kernel", [3, 5])
def test_separable_conv_is_relu_depthwise_pointwise_bn_twice(kernel):
    torch.manual_seed(kernel)
    op = OPS[f"sep_conv_{kernel}x{kernel}"](4)
    randomize_batchnorm(op)
    x = torch.randn(2, 4, 9, 7)
    first = batchnorm_by_hand(depthwise_pointwise_by_hand(x, op.depthwise1, op.pointwise1, 1), op.bn1)
    expected = batchnorm_by_hand(depthwise_pointwise_by_hand(first, op.depthwise2, op.pointwise2, 1), op.bn2)
    op.train()
    torch.testing.assert_close(op(x), expected, atol=1e-5, rtol=1e-5)
    assert op.depthwise1.groups == 4 and op.depthwise1.bias is None and op.pointwise1.kernel_size == (1, 1)


@pytest.mark.parametrize("kernel", [3, 5])
def test_atrous_conv_is_relu_dilated_depthwise_pointwise_bn(kernel):
    torch.manual_seed(10 + kernel)
    op = OPS[f"dil_conv_{kernel}x{kernel}"](3)
    randomize_batchnorm(op)
    x = torch.randn(2, 3, 11, 10)
    expected = batchnorm_by_hand(depthwise_pointwise_by_hand(x, op.depthwise, op.pointwise, 2), op.bn)
    op.train()
    torch.testing.assert_close(op(x), expected, atol=1e-5, rtol=1e-5)
    # In eval mode BN uses the running statistics: (y - running_mean) / sqrt(running_var + eps) * g + b.
    op.eval()
    y = depthwise_pointwise_by_hand(x, op.depthwise, op.pointwise, 2)
    shape = (1, -1, 1, 1)
    bn = op.bn
    normalized = (y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
    expected_eval = normalized * bn.weight.view(shape) + bn.bias.view(shape)
    torch.testing.assert_close(op(x), expected_eval, atol=1e-5, rtol=1e-5)


def test_atrous_depthwise_taps_are_two_pixels_apart():
    """An impulse through the rate-2 depthwise 3x3 conv lands the (flipped) kernel on every other pixel."""
    op = OPS["dil_conv_3x3"](1)
    kernel = torch.arange(1.0, 10.0).view(3, 3)
    op.depthwise.weight.data = kernel.view(1, 1, 3, 3)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    response = op.depthwise(impulse)[0, 0]
    expected = torch.zeros(9, 9)
    for i in range(3):
        for j in range(3):  # output (4 - 2(i-1), 4 - 2(j-1)) reads the impulse through tap (i, j)
            expected[4 - 2 * (i - 1), 4 - 2 * (j - 1)] = kernel[i, j]
    torch.testing.assert_close(response, expected)


def test_pooling_skip_and_none_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # row r, column c holds 4r + c
    avg, mx = OPS["avg_pool_3x3"](1)(x)[0, 0], OPS["max_pool_3x3"](1)(x)[0, 0]
    assert avg[0, 0] == (0 + 1 + 4 + 5) / 4  # corner: padding not counted
    assert avg[0, 1] == (0 + 1 + 2 + 4 + 5 + 6) / 6
    assert avg[1, 1] == sum([0, 1, 2, 4, 5, 6, 8, 9, 10]) / 9
    assert mx[0, 0] == 5 and mx[2, 1] == 14 and mx[3, 3] == 15
    assert torch.equal(OPS["skip_connect"](1)(x), x)
    assert torch.equal(OPS["none"](1)(x), torch.zeros_like(x))
    assert avg.shape == mx.shape == (4, 4)


@pytest.mark.parametrize("index", range(len(OP_NAMES)))
def test_mixed_op_with_one_hot_weights_is_that_op(index):
    torch.manual_seed(0)
    mixed = MixedOp(3)
    x = torch.randn(2, 3, 6, 6)
    weights = torch.zeros(len(OP_NAMES))
    weights[index] = 1.0
    expected = mixed.ops[OP_NAMES[index]](x)
    torch.testing.assert_close(mixed(x, weights), expected, atol=0, rtol=0)


def test_mixed_op_is_the_weighted_sum_of_all_ops():
    torch.manual_seed(1)
    mixed = MixedOp(2).eval()
    x = torch.randn(1, 2, 5, 5)
    weights = torch.randn(len(OP_NAMES)).softmax(0)
    expected = sum(weights[k] * mixed.ops[name](x) for k, name in enumerate(OP_NAMES))
    torch.testing.assert_close(mixed(x, weights), expected)
    with pytest.raises(ValueError, match="shape"):
        mixed(x, weights[:5])


# ------------------------------------------------------------------------------------------------- cells


def test_cell_edges_and_counts():
    assert cell_edges(2) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    assert num_edges(5) == 2 + 3 + 4 + 5 + 6 == 20
    assert num_edges(4) == 14  # the DARTS cell
    size = search_space_size(num_blocks=2, num_layers=2)
    assert size["cells"] == (1 * 49) * (3 * 49)  # block 0: both of 2 states; block 1: 2 of 3
    # Layer 1: levels 0 or 1; layer 2: from 0 -> {0, 1}, from 1 -> {0, 1, 2}: 5 paths.
    assert size["paths"] == 5


def test_decode_cell_on_a_hand_made_alpha():
    """B = 2: block 0 reads states 0, 1 (edges 0, 1); block 1 reads states 0, 1, 2 (edges 2, 3, 4)."""
    index = {name: k for k, name in enumerate(OP_NAMES)}
    alpha = torch.zeros(5, len(OP_NAMES))
    alpha[0, index["sep_conv_5x5"]] = 2.0
    alpha[1, index["none"]] = 9.0  # none is strongest here, but never chosen ...
    alpha[1, index["avg_pool_3x3"]] = 1.0  # ... the best of the others is
    alpha[2, index["skip_connect"]] = 3.0  # weight e^3 / (e^3 + 7): strong
    alpha[3, index["none"]] = 5.0
    alpha[3, index["dil_conv_3x3"]] = 4.0  # e^4 / (e^5 + e^4 + 6): weaker than edge 4's (larger logit)
    alpha[4, index["max_pool_3x3"]] = 2.5  # e^2.5 / (e^2.5 + 7)
    weights = alpha.softmax(-1).numpy()
    dil, pool = weights[3, index["dil_conv_3x3"]], weights[4, index["max_pool_3x3"]]
    assert dil < pool < weights[2, index["skip_connect"]]
    expected = [[("sep_conv_5x5", 0), ("avg_pool_3x3", 1)], [("skip_connect", 0), ("max_pool_3x3", 2)]]
    assert decode_cell(alpha) == expected
    assert decode_cell(alpha.numpy()) == expected
    text = format_genotype(expected)
    assert "block 1 = skip_connect(prev_prev) + max_pool_3x3(block 0)" in text
    with pytest.raises(ValueError, match="no cell's number of edges"):
        decode_cell(torch.zeros(6, len(OP_NAMES)))


def copy_weights_into_discrete(mixed: SearchCell, discrete: DiscreteCell, genotype) -> None:
    """Give the discrete cell the relaxed cell's weights: preprocessing, and each chosen edge's chosen op."""
    discrete.preprocess_prev_prev.load_state_dict(mixed.preprocess_prev_prev.state_dict())
    discrete.preprocess_prev.load_state_dict(mixed.preprocess_prev.state_dict())
    edges = cell_edges(len(genotype))
    for block, pairs in enumerate(genotype):
        for k, (op_name, state) in enumerate(pairs):
            source = mixed.edges[edges.index((block, state))].ops[op_name]
            discrete.ops[2 * block + k].load_state_dict(source.state_dict())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_relaxed_cell_with_near_one_hot_alpha_equals_the_decoded_cell(mode):
    """alpha one-hot (logits +-30) on the chosen operator of chosen edges and on "none" elsewhere: the
    relaxed cell computes the discrete cell that decode_cell reads off the same alpha."""
    genotype = [
        [("sep_conv_3x3", 0), ("dil_conv_5x5", 1)],
        [("sep_conv_5x5", 1), ("avg_pool_3x3", 2)],
        [("skip_connect", 0), ("dil_conv_3x3", 3)],
        [("max_pool_3x3", 2), ("sep_conv_3x3", 4)],
    ]
    edges = cell_edges(len(genotype))
    alpha = torch.full((len(edges), len(OP_NAMES)), -30.0)
    alpha[:, OP_NAMES.index("none")] = 30.0
    for block, pairs in enumerate(genotype):
        for op_name, state in pairs:
            edge = edges.index((block, state))
            alpha[edge] = -30.0
            alpha[edge, OP_NAMES.index(op_name)] = 30.0
    decoded = decode_cell(alpha)
    assert [sorted(pairs, key=lambda pair: pair[1]) for pairs in decoded] == genotype

    torch.manual_seed(3)
    mixed = SearchCell(prev_prev_channels=5, prev_channels=6, channels=3, num_blocks=len(genotype))
    randomize_batchnorm(mixed, seed=1)
    discrete = DiscreteCell(5, 6, 3, decoded)
    copy_weights_into_discrete(mixed, discrete, decoded)
    getattr(mixed, mode)()
    getattr(discrete, mode)()
    prev_prev, prev = torch.randn(2, 5, 8, 8), torch.randn(2, 6, 8, 8)
    expected = discrete(prev_prev, prev)
    assert expected.shape == (2, 4 * 3, 8, 8)
    torch.testing.assert_close(mixed(prev_prev, prev, alpha.softmax(-1)), expected, atol=1e-5, rtol=1e-5)


def test_genotype_errors_name_the_block():
    with pytest.raises(ValueError, match="block 1: unknown operator 'conv_7x7'"):
        genotype = [[("skip_connect", 0), ("skip_connect", 1)], [("conv_7x7", 0), ("skip_connect", 1)]]
        DiscreteCell(2, 2, 2, genotype)
    with pytest.raises(ValueError, match="block 0: unknown operator 'none'"):
        DiscreteCell(2, 2, 2, [[("none", 0), ("skip_connect", 1)]])
    with pytest.raises(ValueError, match="block 0: state 2 out of range"):
        DiscreteCell(2, 2, 2, [[("skip_connect", 2), ("skip_connect", 1)]])
    # Lists as read back from YAML are fine.
    assert DiscreteCell(2, 2, 2, [[["skip_connect", 0], ["sep_conv_3x3", 1]]]).genotype == [
        [("skip_connect", 0), ("sep_conv_3x3", 1)]]


# ------------------------------------------------------------------------------------------------- paths


def transition_probabilities_numpy(beta: np.ndarray) -> np.ndarray:
    """p[l, t, d]: softmax of beta[l, t] over the possible directions (no up at level 0, no down at 3)."""
    probabilities = np.zeros_like(beta)
    for layer in range(beta.shape[0]):
        for level in range(4):
            valid = [d for d in range(3) if 0 <= level + d - 1 <= 3]
            exps = np.exp(beta[layer, level, valid] - beta[layer, level, valid].max())
            probabilities[layer, level, valid] = exps / exps.sum()
    return probabilities


def valid_level_sequences(num_layers: int) -> list[tuple[int, ...]]:
    """Every sequence of levels (layers 1..L) starting next to level 0, moving at most one level a layer."""
    sequences = []
    for levels in itertools.product(range(4), repeat=num_layers):
        full = (0, *levels)
        if all(abs(b - a) <= 1 for a, b in zip(full[:-1], full[1:], strict=True)):
            sequences.append(levels)
    return sequences


def brute_force_path(beta: np.ndarray) -> tuple[list[int], float]:
    """Try every valid path; return the most probable one (strides) and its probability."""
    p = transition_probabilities_numpy(beta)
    best_levels, best_probability = None, -1.0
    for levels in valid_level_sequences(beta.shape[0]):
        full = (0, *levels)
        steps = enumerate(zip(full[:-1], full[1:], strict=True))
        probability = np.prod([p[layer, a, b - a + 1] for layer, (a, b) in steps])
        if probability > best_probability:
            best_levels, best_probability = levels, probability
    return [STRIDES[level] for level in best_levels], float(best_probability)


def test_beta_probabilities_softmax_over_outgoing_choices():
    beta = torch.randn(2, 4, 3)
    p = beta_probabilities(beta)
    assert torch.all(p[:, 0, 0] == 0) and torch.all(p[:, 3, 2] == 0)
    np.testing.assert_allclose(p.numpy(), transition_probabilities_numpy(beta.numpy()), atol=1e-6)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("num_layers", [1, 2, 3, 4, 5, 6])
def test_viterbi_path_matches_brute_force(num_layers):
    rng = np.random.default_rng(num_layers)
    for _ in range(20):
        beta = rng.normal(scale=2.0, size=(num_layers, 4, 3))
        expected_path, expected_probability = brute_force_path(beta)
        path = decode_path(torch.from_numpy(beta))
        assert path == expected_path
        assert path_probability(beta, path) == pytest.approx(expected_probability, rel=1e-9)
    paths = search_space_size(num_blocks=2, num_layers=num_layers)["paths"]
    assert paths == len(valid_level_sequences(num_layers))


def test_viterbi_follows_strong_transitions_and_the_path_rules():
    beta = torch.zeros(6, 4, 3)
    beta[:, :, 2] = 5.0  # everyone prefers going down: 8, 16, 32 ...
    beta[:, 3, 1] = 5.0  # ... and at stride 32, where down is impossible, staying
    assert decode_path(beta) == [8, 16, 32, 32, 32, 32]
    beta[3:, :, 0] = 10.0  # from layer 3 on, prefer going up
    assert decode_path(beta) == [8, 16, 32, 16, 8, 4]
    text = draw_path([8, 16, 32, 16, 8, 4])
    assert text.splitlines()[1] == "stride  4   o  .  .  .  .  .  o"
    assert text.splitlines()[4] == "stride 32   .  .  .  o  .  .  ."
    with pytest.raises(ValueError, match="layer 1: stride 16 after 4"):
        path_probability(beta, [16, 16, 16, 16, 16, 16])
    with pytest.raises(ValueError, match="layer 2: stride 12"):
        draw_path([8, 12])


# ----------------------------------------------------------------------------------------------- networks


def tiny_search_network(num_layers: int = 3, seed: int = 0) -> AutoDeepLabSearch:
    torch.manual_seed(seed)
    network = AutoDeepLabSearch(num_classes=3, num_layers=num_layers, num_blocks=2, filter_multiplier=2,
                                stem_channels=4, aspp_channels=4)
    network.alpha.data = torch.randn_like(network.alpha)
    network.beta.data = torch.randn_like(network.beta)
    randomize_batchnorm(network, seed=seed)
    return network


def test_search_network_computes_the_beta_weighted_trellis():
    """The relaxed network against its recursion written out here: node (l, s) = sum over sources t of
    p(l-1, t -> s) * cell_{l,s,t}(H(l-2, s) or the resized prev, resized H(l-1, t)); logits = sum of the
    per-level heads upsampled to the input size."""
    network = tiny_search_network(num_layers=3).eval()
    x = torch.randn(2, 3, 36, 44)
    p = transition_probabilities_numpy(network.beta.detach().numpy())
    op_weights = network.alpha.softmax(-1)
    with torch.no_grad():
        nodes = {(0, 0): network.stem(x)}
        h, w = nodes[(0, 0)].shape[-2:]
        assert (h, w) == (9, 11)
        sizes = [(int(np.ceil(h / 2**s)), int(np.ceil(w / 2**s))) for s in range(4)]
        for layer in (1, 2, 3):
            for level in range(min(layer, 3) + 1):
                total = 0
                for source in (level - 1, level, level + 1):
                    if (layer - 1, source) not in nodes:
                        continue
                    prev = F.interpolate(nodes[(layer - 1, source)], size=sizes[level], mode="bilinear",
                                         align_corners=False)
                    prev_prev = nodes.get((layer - 2, level), prev)
                    cell = network.cells[f"layer{layer}_level{level}_from{source}"]
                    weight = float(p[layer - 1, source, level - source + 1])
                    total = total + weight * cell(prev_prev, prev, op_weights)
                nodes[(layer, level)] = total
        expected = sum(F.interpolate(network.heads[level](nodes[(3, level)]), size=(36, 44), mode="bilinear",
                                     align_corners=False) for level in range(4))
        actual = network(x)
    assert actual.shape == (2, 3, 36, 44)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    # Layers 1..3 reach 2 + 3 + 4 nodes, fed by 2 + 5 + 8 cells.
    assert len(network.cells) == 15 and len(network.heads) == 4
    assert network.last_layer_prefixes == tuple(f"heads.{s}.classifier." for s in range(4))


def test_halving_by_bilinear_resize_is_a_2x2_average_pool():
    x = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(resize(x, (4, 3)), F.avg_pool2d(x, 2))
    assert resize(x, (8, 6)) is x


def test_search_network_gradients_reach_alpha_and_beta():
    network = tiny_search_network(num_layers=2).train()
    x, target = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    F.cross_entropy(network(x), target).backward()
    for name, parameter in [("alpha", network.alpha), ("beta", network.beta)]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # beta entries of impossible moves (up at stride 4, down at 32) and of unreachable nodes get no gradient.
    assert network.beta.grad[:, 0, 0].abs().sum() == 0
    assert network.beta.grad[0, 1:].abs().sum() == 0  # layer 0 has only the stem node (level 0)
    arch = {id(p) for p in network.arch_parameters()}
    weights = {id(p) for p in network.weight_parameters()}
    assert not arch & weights and arch | weights == {id(p) for p in network.parameters()}


def test_decoded_network_follows_the_path():
    genotype = [[("sep_conv_3x3", 1), ("skip_connect", 0)], [("dil_conv_3x3", 2), ("max_pool_3x3", 1)]]
    torch.manual_seed(0)
    model = AutoDeepLab(genotype, [4, 8, 16, 8], num_classes=3, filter_multiplier=2, stem_channels=4,
                        aspp_channels=4)
    randomize_batchnorm(model)
    model.eval()
    x = torch.randn(2, 3, 40, 36)

    def to_level(t, level):
        size = (int(np.ceil(10 / 2**level)), int(np.ceil(9 / 2**level)))
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    with torch.no_grad():
        stem = model.stem(x)
        assert stem.shape[-2:] == (10, 9)
        out1 = model.cells[0](to_level(stem, 0), to_level(stem, 0))
        out2 = model.cells[1](to_level(stem, 1), to_level(out1, 1))
        out3 = model.cells[2](to_level(out1, 2), to_level(out2, 2))
        out4 = model.cells[3](to_level(out2, 1), to_level(out3, 1))
        expected = F.interpolate(model.head(out4), size=(40, 36), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # Channels: B * F * 2^level = 2 * 2 * (1, 2, 4, 2); the head's ASPP rate is 96 / 8 = 12.
    assert [cell.num_blocks * cell.channels for cell in model.cells] == [4, 8, 16, 8]
    assert model.head.aspp.atrous[0].conv.dilation == (12, 12)
    assert model.output_stride == 16
    groups = {group["name"]: group["param_names"] for group in param_groups(model)}
    assert groups["last_layer.weight"] == ["head.classifier.weight"]
    with pytest.raises(ValueError, match="layer 2: stride 32 after 8"):
        AutoDeepLab(genotype, [8, 32])
