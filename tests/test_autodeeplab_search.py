"""Auto-DeepLab search loop and the decoded model in segkit's Trainer.

The bi-level test tags every sample with the half of train it belongs to (through its unique mask) and
records, at every optimizer step, which half the step's batch came from and which parameters moved.
mIoU values are re-computed here with a numpy bincount confusion matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from segkit.search.autodeeplab import (
    AutoDeepLabSearch,
    BilevelSearch,
    build_decoded_model,
    decode_cell,
    decode_path,
    search,
    split_train,
)
from segkit.trainer import Callback, Trainer


class RandomSegmentation(Dataset):
    """``n`` random images (3, size, size) with random masks of ``num_classes`` classes (unique per image)."""

    def __init__(self, n: int, size: int = 32, num_classes: int = 3, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=generator)
        self.masks = torch.randint(0, num_classes, (n, size, size), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.masks[index]


class Squares(Dataset):
    """A bright square (class 1) on a noisy dark background (class 0), with a void (255) border."""

    def __init__(self, n: int, size: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples = []
        for _ in range(n):
            image = rng.normal(0.0, 0.3, size=(3, size, size)).astype(np.float32)
            mask = np.zeros((size, size), dtype=np.int64)
            side = int(rng.integers(8, 16))
            top, left = (int(v) for v in rng.integers(0, size - side, size=2))
            image[:, top:top + side, left:left + side] += 2.0
            mask[top:top + side, left:left + side] = 1
            mask[:, 0] = 255
            self.samples.append((torch.from_numpy(image), torch.from_numpy(mask)))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]


def tiny_network(num_classes: int = 3, num_layers: int = 2, seed: int = 0) -> AutoDeepLabSearch:
    torch.manual_seed(seed)
    return AutoDeepLabSearch(num_classes=num_classes, num_layers=num_layers, num_blocks=2,
                             filter_multiplier=2, stem_channels=4, aspp_channels=4)


def miou_by_hand(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> float:
    """VOC mIoU from a bincount confusion matrix (void 255 left out; classes absent from both left out)."""
    keep = targets != 255
    matrix = np.bincount(num_classes * targets[keep] + predictions[keep], minlength=num_classes**2)
    matrix = matrix.reshape(num_classes, num_classes)
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def test_split_train_is_a_seeded_disjoint_cover():
    dataset = RandomSegmentation(11, size=4)
    train_a, train_b = split_train(dataset, seed=3)
    assert len(train_a) == 6 and len(train_b) == 5  # round(5.5) = 6 (banker's rounding gives 6)
    assert set(train_a.indices).isdisjoint(train_b.indices)
    assert sorted(train_a.indices + train_b.indices) == list(range(11))
    again_a, _ = split_train(dataset, seed=3)
    assert again_a.indices == train_a.indices
    with pytest.raises(ValueError, match="non-empty halves"):
        split_train(RandomSegmentation(1, size=4))


def test_weights_learn_on_train_a_only_and_the_architecture_on_train_b_only():
    dataset = RandomSegmentation(12)
    train_a, train_b = split_train(dataset, seed=0)
    half_of = {dataset.masks[i].numpy().tobytes(): "A" for i in train_a.indices}
    half_of.update({dataset.masks[i].numpy().tobytes(): "B" for i in train_b.indices})
    loss_calls = []  # per loss call: the set of halves its batch came from

    def recording_loss(logits, target):
        loss_calls.append({half_of[t.numpy().tobytes()] for t in target})
        return F.cross_entropy(logits, target, ignore_index=255)

    network = tiny_network()
    initial_alpha = network.alpha.detach().clone()
    runner = BilevelSearch(network, train_a, train_b, epochs=2, warmup_epochs=1, batch_size=2,
                           loss_fn=recording_loss, seed=0)
    weight_ids = {id(p) for p in runner.weight_optimizer.param_groups[0]["params"]}
    arch_ids = {id(p) for p in runner.arch_optimizer.param_groups[0]["params"]}
    assert arch_ids == {id(network.alpha), id(network.beta)}
    assert weight_ids.isdisjoint(arch_ids) and weight_ids | arch_ids == {id(p) for p in network.parameters()}

    steps = []  # (optimizer, halves of its batch, own parameters changed, other parameters unchanged)
    before = {}

    def snapshot():
        return ([p.detach().clone() for p in network.weight_parameters()],
                [p.detach().clone() for p in network.arch_parameters()])

    def pre_hook(optimizer, args, kwargs):
        before["weights"], before["arch"] = snapshot()

    def post_hook_for(kind):
        def post_hook(optimizer, args, kwargs):
            weights, arch = snapshot()
            weights_same = all(torch.equal(a, b) for a, b in zip(before["weights"], weights, strict=True))
            arch_same = all(torch.equal(a, b) for a, b in zip(before["arch"], arch, strict=True))
            own_changed, other_same = (not weights_same, arch_same) if kind == "weight" else (not arch_same,
                                                                                           weights_same)
            steps.append((kind, loss_calls[-1], own_changed, other_same))
        return post_hook

    for optimizer, kind in [(runner.weight_optimizer, "weight"), (runner.arch_optimizer, "arch")]:
        optimizer.register_step_pre_hook(pre_hook)
        optimizer.register_step_post_hook(post_hook_for(kind))
    history = runner.run()

    # 6 samples per half, batches of 2: 3 weight steps per epoch; architecture steps in epoch 2 only,
    # alternating with the weight steps.
    assert [kind for kind, *_ in steps] == ["weight"] * 4 + ["arch", "weight", "arch", "weight", "arch"]
    for kind, halves, own_changed, other_same in steps:
        assert halves == ({"A"} if kind == "weight" else {"B"}), (kind, halves)
        assert own_changed and other_same, kind
    assert len(loss_calls) == len(steps)  # every loss call was followed by a step of its own optimizer
    assert len(history.weight_losses) == 6 and len(history.arch_losses) == 3
    torch.testing.assert_close(history.alphas[0], initial_alpha, atol=0, rtol=0)  # warm-up: alpha untouched
    assert not torch.equal(history.alphas[1], history.alphas[0])
    assert not torch.equal(history.betas[1], history.betas[0])


def test_search_history_and_validation_miou():
    network = tiny_network(num_classes=2)
    train, val = Squares(8, seed=0), Squares(4, seed=1)
    history = search(network, train, val_dataset=val, epochs=2, warmup_epochs=1, batch_size=2,
                     limit_batches=1, seed=0)
    assert len(history.weight_losses) == 2 and len(history.arch_losses) == 1
    assert all(np.isfinite(history.weight_losses + history.arch_losses))
    assert len(history.alphas) == len(history.betas) == len(history.paths) == len(history.val_miou) == 2
    assert history.genotypes[-1] == decode_cell(network.alpha)
    assert history.paths[-1] == decode_path(network.beta)
    network.eval()
    with torch.no_grad():
        predictions = torch.cat([network(images).argmax(1) for images, _ in DataLoader(val, batch_size=2)])
    targets = torch.stack([mask for _, mask in val])
    assert history.val_miou[-1] == pytest.approx(miou_by_hand(predictions.numpy(), targets.numpy(), 2))


def test_search_options_are_checked():
    network, dataset = tiny_network(), RandomSegmentation(4, size=8)
    with pytest.raises(ValueError, match="warmup_epochs"):
        BilevelSearch(network, dataset, dataset, epochs=2, warmup_epochs=2)
    with pytest.raises(ValueError, match="train_b has 1 samples, fewer than batch_size=2"):
        BilevelSearch(network, dataset, RandomSegmentation(1, size=8), batch_size=2)
    runner = BilevelSearch(network, dataset, dataset, epochs=2, warmup_epochs=1,
                           loss_fn=lambda logits, target: logits.sum() * float("nan"))
    with pytest.raises(FloatingPointError, match="in a weight step .after 0 weight and 0 architecture steps"):
        runner.run()


class ValLosses(Callback):
    def __init__(self):
        self.losses = []

    def on_evaluate_end(self, trainer, metrics) -> None:
        self.losses.append(metrics["loss"])


def test_decoded_model_trains_with_the_trainer(tmp_path):
    searched = tiny_network(num_layers=3, seed=1)
    model = build_decoded_model(searched, num_classes=2)
    assert len(model.cells) == 3 and model.path == decode_path(searched.beta)
    data = Squares(8)
    train_loader = DataLoader(data, batch_size=4, shuffle=True)
    val_loader = DataLoader(data, batch_size=4)
    val_losses = ValLosses()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    trainer = Trainer(model, nn.CrossEntropyLoss(ignore_index=255), optimizer, train_loader, val_loader,
                      num_classes=2, epochs=6, run_dir=tmp_path / "run", device="cpu", progress_bar=False,
                      print_table=False, tensorboard=False, callbacks=[val_losses])
    metrics = trainer.fit()
    assert all(np.isfinite(val_losses.losses)) and len(val_losses.losses) == 6
    assert val_losses.losses[-1] < val_losses.losses[0]
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(images).argmax(1) for images, _ in val_loader])
    targets = torch.stack([mask for _, mask in data])
    assert metrics["miou"] == pytest.approx(miou_by_hand(predictions.numpy(), targets.numpy(), 2))
