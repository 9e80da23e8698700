"""Deep priors (segkit.search.deep_prior): architecture strings against hand-written strings and torch's own
layer arithmetic, the random encoder against torch.nn.functional and the Kaiming formula, the frozen encoder
through a real Trainer.fit, the embedding cache (encoder forward calls counted with a hook), the export, and
head training on cached embeddings against the Trainer on the live encoder."""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from segkit.data import make_shapes
from segkit.losses import build_loss
from segkit.models import build_model, count_parameters
from segkit.models.deep_prior.archstring import (
    ArchStringError,
    Conv,
    InfeasibleArchitecture,
    Pool,
    check_feasible,
    format_arch,
    infeasibility,
    parse_arch,
    spatial_sizes,
)
from segkit.models.deep_prior.network import DeepPriorModel, HeadOnFeatures, LinearHead, RandomEncoder
from segkit.optim import build_optimizer
from segkit.search.deep_prior.embeddings import (
    ProbeData,
    cache_path,
    compute_features,
    load_stored_embeddings,
    store_embeddings,
)
from segkit.search.deep_prior.probe import fit, score_architecture
from segkit.trainer import Trainer

ARCH = "[C(8,3,1,1,0), P(2,2), C(8,3,1,1,1), C(12,1,1,0,1)]"



@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=8, n_val=4, n_test=0)


@pytest.fixture
def encoder_calls(monkeypatch):
    """Counts forward calls of every RandomEncoder (a global forward hook)."""
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: calls.append(module.arch) if isinstance(module, RandomEncoder) else None)
    yield calls
    handle.remove()


# ------------------------------------------------------------------------------------ architecture strings

CANONICAL = [
    "[]",
    "[C(16,3,1,1,0)]",
    "[P(2,2)]",
    "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]",
    "[C(128,7,2,3,0), P(3,2), C(64,1,1,0,1), P(4,4), C(1024,11,1,5,1)]",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_strings_print_back_unchanged(text):
    assert format_arch(parse_arch(text)) == text


def test_layers_survive_print_and_parse():
    rng = random.Random(0)
    for _ in range(200):
        layers = []
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.3:
                layers.append(Pool(rng.randint(1, 5), rng.randint(1, 4)))
            elif rng.random() < 0.5:
                kernel = rng.choice([1, 3, 5, 7])
                layers.append(Conv(rng.randint(1, 512), kernel, 1, (kernel - 1) // 2, 1))
            else:
                kernel = rng.randint(1, 9)
                pad = rng.randint(0, kernel // 2)
                layers.append(Conv(rng.randint(1, 512), kernel, rng.randint(1, 3), pad, 0))
        layers = tuple(layers)
        assert parse_arch(format_arch(layers)) == layers


def test_other_spacing_parses_to_the_canonical_string():
    assert format_arch(parse_arch(" [ C( 16 , 3,1,1 ,0 ),P(2, 2) ] ")) == "[C(16,3,1,1,0), P(2,2)]"
    assert parse_arch("[C(16,3,1,1,0)]") == (Conv(features=16, kernel=3, stride=1, pad=1, skip=0),)


@pytest.mark.parametrize(
    ("text", "bad", "message"),
    [
        ("[C(16,3,1,1,0), X(2,2)]", "X", "unknown layer 'X'"),
        ("[C(16,3,1,1,0), SM(10)]", "SM", "unknown layer 'SM'"),
        ("C(16,3,1,1,0)", "C", "expected '['"),
        ("[C(16,3,1,1)]", ")", "expected ',' after pad"),
        ("[P(2,2,0,0)]", ",0", "P takes 2 numbers"),
        ("[C(-16,3,1,1,0)]", "-", "a non-negative integer for features"),
        ("[C(16,3,1,1,0) P(2,2)]", "P", "',' between layers"),
        ("[C(16,3,1,1,0)] x", "x", "nothing after the closing ']'"),
        ("[C(16,3,1,1,0),", None, "found the end of the string"),
        ("[P(2,2), C(16,3,2,1,1)]", "C(16,3,2", "residual layer (skip=1) must keep the spatial size"),
        ("[C(16,3,1,2,0)]", "C", "pad must be between 0 and kernel // 2 = 1"),
        ("[C(16,3,1,1,2)]", "C", "skip must be 0 (plain) or 1"),
        ("[P(0,2)]", "P", "size and stride must be >= 1"),
    ],
)
def test_errors_name_the_token_and_its_position(text, bad, message):
    with pytest.raises(ArchStringError) as error:
        parse_arch(text)
    position = len(text) if bad is None else text.index(bad)
    assert f"at position {position}:" in str(error.value)
    assert message in str(error.value)
    assert repr(text) in str(error.value)


def test_sizes_and_feasibility_follow_torch():
    """spatial_sizes against the shapes torch's own layers produce; infeasible strings make torch fail."""
    cases = [("[C(4,3,1,1,0), P(2,2), C(4,5,2,0,0), P(3,2)]", (37, 45), None),
             ("[C(4,7,3,0,0)]", (7, 20), None),
             ("[P(4,4), P(4,4), C(4,3,1,0,0)]", (40, 64), r"layer 2 C\(4,3,1,0,0\) gets a 2x4 map"),
             ("[P(3,3), P(3,3)]", (8, 8), r"layer 1 P\(3,3\) gets a 2x2 map and leaves 0x0 pixels")]
    for text, size, reason in cases:
        layers = parse_arch(text)
        x = torch.zeros(1, 3, *size)
        encoder = RandomEncoder(text)
        if reason is None:
            assert infeasibility(layers, size) is None
            assert check_feasible(layers, size) == [tuple(m(x).shape[-2:]) for m in _prefixes(encoder)]
        else:
            with pytest.raises(InfeasibleArchitecture, match=reason):
                check_feasible(layers, size)
            with pytest.raises(RuntimeError):
                encoder(x)
    # By hand: 64 -> conv k3 s2 p0: floor(61/2)+1 = 31 -> pool 3/2: floor(28/2)+1 = 15.
    assert spatial_sizes(parse_arch("[C(4,3,2,0,0), P(3,2)]"), 64) == [(31, 31), (15, 15)]
    # torch runs a stride-16 conv on 8 pixels (1x1 output), but the stride is larger than the input.
    assert "output stride 16 is larger than the 8x8 input" in infeasibility(parse_arch("[C(4,1,16,0,0)]"), 8)


def _prefixes(encoder):
    """nn.Sequential of the first 1, 2, ... layers of encoder."""
    return [nn.Sequential(*list(encoder)[: i + 1]) for i in range(len(encoder))]


# ------------------------------------------------------------------------------------------------ models


def reference_features(x, encoder):
    """The encoder of ARCH written with torch.nn.functional: conv-relu, maxpool, residuals."""
    w0 = encoder[0].conv.weight
    w2, w3, shortcut = encoder[2].conv.weight, encoder[3].conv.weight, encoder[3].shortcut.weight
    y = F.relu(F.conv2d(x, w0, padding=1))
    y = F.max_pool2d(y, 2, 2)
    y = F.relu(F.conv2d(y, w2, padding=1)) + y  # 8 -> 8 channels: identity shortcut
    return F.relu(F.conv2d(y, w3)) + F.conv2d(y, shortcut)  # 8 -> 12 channels: 1x1 projection


def test_model_matches_functional_ops():
    model = build_model("deep_prior", num_classes=5, arch=ARCH, seed=3)
    with torch.no_grad():
        model.head.classifier.weight.normal_()
        model.head.classifier.bias.normal_()
    x = torch.randn(2, 3, 18, 22)
    features = reference_features(x, model.encoder)
    logits = F.conv2d(features, model.head.classifier.weight, model.head.classifier.bias)
    expected = F.interpolate(logits, size=(18, 22), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(x), expected)
    assert model.encoder.output_stride == 2 and model.encoder.out_channels == 12
    assert model.encoder.arch == ARCH and model.arch == ARCH


def test_kaiming_normal_weights_from_the_seed():
    encoder = RandomEncoder("[C(64,5,1,2,0), C(96,3,1,1,1)]", seed=5)
    # The documented recipe by hand: one generator, convs in module order, N(0, 2 / fan_in).
    generator = torch.Generator().manual_seed(5)
    for conv, fan_in in [(encoder[0].conv, 3 * 25), (encoder[1].conv, 64 * 9), (encoder[1].shortcut, 64)]:
        expected = torch.empty(conv.weight.shape).normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        assert torch.equal(conv.weight, expected)
        assert conv.bias is None
    weights = encoder[1].conv.weight  # 96 * 64 * 9 = 55,296 draws: the sample std is within 2 %
    assert abs(weights.std().item() / math.sqrt(2 / (64 * 9)) - 1) < 0.02
    assert abs(weights.mean().item()) < 0.002
    assert torch.equal(RandomEncoder("[C(64,5,1,2,0), C(96,3,1,1,1)]", seed=5)[0].conv.weight,
                       encoder[0].conv.weight)
    assert not torch.equal(RandomEncoder("[C(64,5,1,2,0)]", seed=6)[0].conv.weight, encoder[0].conv.weight)


def test_registry_conventions_and_frozen_parameters():
    arch = "[C(8,3,1,1,0), P(2,2), P(2,2), C(8,3,1,1,1), P(2,2)]"
    model = build_model("deep_prior", num_classes=5, arch=arch)
    logits = model.eval()(torch.randn(2, 3, 37, 45))
    assert logits.shape == (2, 5, 37, 45) and model.output_stride == 8
    selected = [n for n, _ in model.named_parameters() if n.startswith(model.last_layer_prefixes)]
    assert selected == ["head.classifier.weight", "head.classifier.bias"]
    assert all(n.startswith("encoder.") for n, p in model.named_parameters() if not n.startswith("head."))
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert count_parameters(model, trainable_only=True) == 8 * 5 + 5
    trainable = build_model("deep_prior", num_classes=5, freeze_encoder=False)
    assert all(p.requires_grad for p in trainable.parameters())
    model.train()
    assert model.training and model.head.training and not model.encoder.training
    with pytest.raises(ValueError, match="needs an int attribute out_channels"):
        DeepPriorModel(nn.ReLU(), num_classes=5)


class BatchNormEncoder(nn.Sequential):
    """A user-given encoder with BatchNorm: freezing must keep its running statistics too."""

    out_channels = 4

    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def run_trainer(model, dataset, run_dir, epochs=1, seed=0, lr=0.05):
    optimizer = build_optimizer(model, "adam", lr=lr, weight_decay=0.0)
    loader = DataLoader(dataset, batch_size=4, shuffle=True)
    trainer = Trainer(model, build_loss("cross_entropy"), optimizer, loader, None, num_classes=21,
                      run_dir=run_dir, epochs=epochs, device="cpu", seed=seed, keep_last_k=0,
                      progress_bar=False, print_table=False, tensorboard=False)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("encoder", [RandomEncoder(ARCH, seed=1), BatchNormEncoder()], ids=["random", "bn"])
def test_trainer_leaves_a_frozen_encoder_bitwise_unchanged(encoder, shapes_root, tmp_path):
    model = DeepPriorModel(encoder, num_classes=21)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}  # weights and buffers
    head_before = model.head.classifier.weight.clone()
    modes = []
    model.encoder.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    trainer = run_trainer(model, data.dataset("train"), tmp_path / "run", epochs=2)
    assert trainer.step == 4 and modes == [False] * 4
    after = model.encoder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(model.head.classifier.weight, head_before)
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    head = {id(p) for _, p in model.head.named_parameters()}
    assert in_optimizer == head and len(head) == 2


# -------------------------------------------------------------------------------------------- embeddings


def test_embeddings_are_computed_once_and_keyed_by_arch_seed_and_data(shapes_root, tmp_path, encoder_calls):
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache", batch_size=3)
    first = data.embeddings(ARCH, seed=0, split="train")
    assert first.computed and len(encoder_calls) == 3  # 8 images in batches of 3
    # The features are the encoder's output on the transformed images, by an independent forward.
    dataset = data.dataset("train")
    images = torch.stack([dataset[i][0].as_subclass(torch.Tensor) for i in range(len(dataset))])
    with torch.no_grad():
        torch.testing.assert_close(first.features, RandomEncoder(ARCH, seed=0)(images))
    assert first.ids == dataset.ids and first.masks.dtype == torch.uint8
    assert torch.equal(first.masks.long(), torch.stack([dataset[i][1] for i in range(len(dataset))]))

    encoder_calls.clear()
    again = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache").embeddings(ARCH, 0, "train")
    assert not again.computed and encoder_calls == [] and torch.equal(again.features, first.features)

    for other in [dict(arch="[C(8,3,1,1,0)]", seed=0), dict(arch=ARCH, seed=1)]:
        encoder_calls.clear()
        assert data.embeddings(other["arch"], other["seed"], "train").computed and encoder_calls
    encoder_calls.clear()
    resized = ProbeData(shapes_root, image_size=16, cache_dir=tmp_path / "cache").embeddings(ARCH, 0, "train")
    assert resized.computed and resized.features.shape[-2:] == (8, 8)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 4 and not list((tmp_path / "cache").glob(".*"))


def test_changed_files_and_damaged_cache_files_are_recomputed(tmp_path, encoder_calls):
    root = make_shapes(tmp_path / "shapes", size=32, n_train=4, n_val=2, n_test=0)
    data = ProbeData(root, image_size=32, cache_dir=tmp_path / "cache")
    first = data.embeddings(ARCH, 0, "val")
    mask = data.dataset("val").mask_path(1)
    stat = os.stat(mask)
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a rewritten label file
    encoder_calls.clear()
    changed = ProbeData(root, image_size=32, cache_dir=tmp_path / "cache").embeddings(ARCH, 0, "val")
    assert changed.computed and encoder_calls and changed.key["data"]["files"] != first.key["data"]["files"]

    changed.path.write_bytes(b"not a torch file")  # damaged (e.g. disk full): computed again, not an error
    encoder_calls.clear()
    repaired = data.embeddings(ARCH, 0, "val")
    assert repaired.computed and torch.equal(repaired.features, changed.features)
    assert repaired.path == cache_path(tmp_path / "cache", repaired.key)
    assert json.loads(repaired.path.with_suffix(".json").read_text()) == repaired.key


def test_images_of_different_sizes_are_refused_with_the_image_id():
    class TwoSizes:
        ids = ["small", "large"]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            size = 16 if i == 0 else 20
            return torch.zeros(3, size, size), torch.zeros(size, size, dtype=torch.int64)

    with pytest.raises(ValueError, match="image 'large' is 20x20 but the first image is 16x16.*image_size"):
        compute_features(RandomEncoder(ARCH), TwoSizes())


def test_store_embeddings_export(shapes_root, tmp_path):
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    splits = {name: data.embeddings(ARCH, 2, name) for name in ("train", "val")}
    out = store_embeddings(tmp_path / "export", splits)
    description = json.loads((out / "embeddings.json").read_text())
    assert description["arch"] == ARCH and description["seed"] == 2
    for name, emb in splits.items():
        assert np.array_equal(np.load(out / f"{name}_features.npy"), emb.features.numpy())
        assert np.array_equal(np.load(out / f"{name}_masks.npy"), emb.masks.numpy())
        assert (out / f"{name}_ids.txt").read_text().split() == data.dataset(name).ids
        assert description["splits"][name]["data"] == data.data_key(name)
        loaded = load_stored_embeddings(out, name)
        assert torch.equal(loaded.features, emb.features) and loaded.key == emb.key
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="different encoders"):
        other_seed = data.embeddings(ARCH, 3, "val")
        store_embeddings(tmp_path / "mixed", {"train": splits["train"], "val": other_seed})


def test_head_on_cached_embeddings_equals_trainer_on_the_live_encoder(shapes_root, tmp_path):
    """Three ways to train the same head for 2 epochs (4 steps) with the same data order: the Trainer on the
    live encoder, the Trainer on cached embeddings, and probe.fit on cached embeddings."""
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    live = DeepPriorModel(RandomEncoder(ARCH, seed=4), num_classes=21)
    run_trainer(live, data.dataset("train"), tmp_path / "live", epochs=2, seed=7)

    cached = data.embeddings(ARCH, 4, "train")
    on_features = HeadOnFeatures(LinearHead(12, 21), (32, 32))
    run_trainer(on_features, cached.dataset(), tmp_path / "cached", epochs=2, seed=7)

    head = LinearHead(12, 21)
    result = fit(HeadOnFeatures(head, (32, 32)), (cached.features, cached.masks), num_classes=21, epochs=2,
                 batch_size=4, lr=0.05, seed=7)
    assert result.steps == 4
    for other in (on_features.head, head):
        torch.testing.assert_close(other.classifier.weight, live.head.classifier.weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(other.classifier.bias, live.head.classifier.bias, atol=1e-6, rtol=0)
    assert live.head.classifier.weight.abs().max() > 0.01  # it did train


def by_hand_miou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    valid = target != 255
    ious = []
    for c in range(num_classes):
        union = np.sum(((pred == c) | (target == c)) & valid)
        if union:
            ious.append(np.sum((pred == c) & (target == c) & valid) / union)
    return float(np.mean(ious))


def test_score_is_the_val_miou_of_the_trained_head_on_images(shapes_root, tmp_path):
    data = ProbeData(shapes_root, image_size=32, cache_dir=tmp_path / "cache")
    result = score_architecture(data, ARCH, seed=0, epochs=2)
    assert result.status == "trained" and len(result.val_miou) == 2 and result.reward == result.val_miou[-1]
    model = DeepPriorModel(RandomEncoder(ARCH, seed=0), num_classes=21)
    model.head = result.head
    images, masks = data.tensors("val")
    with torch.no_grad():
        pred = model.eval()(images).argmax(1)
    assert result.reward == pytest.approx(by_hand_miou(pred.numpy(), masks.numpy(), 21), abs=1e-12)

    stopped = score_architecture(data, ARCH, seed=0, epochs=3, early_stop=(1, 1.01))
    assert stopped.status == "early_stopped" and stopped.val_miou == result.val_miou[:1]
    for arch, reason in [("[P(4,4), P(4,4), P(4,4)]", "layer 2 P(4,4) gets a 2x2 map"),
                         ("[C(64,3,1,1,0)]", "64x32x32 = 65536 values, more than max_embedding_size=1000")]:
        infeasible = score_architecture(data, arch, max_embedding_size=1000)
        assert infeasible.status == "infeasible" and infeasible.reward == 0.0 and reason in infeasible.reason
