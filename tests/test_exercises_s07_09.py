"""Exercises of sessions 7-9: each reference passes its own checker, plausible wrong answers fail, and the
references agree with independent computations (by hand, torch, scipy-free closed forms)."""

from __future__ import annotations

import math
import random
import statistics
import zipfile

import pytest
import torch
from torch import nn

import segkit.course.exercises.s07  # noqa: F401  (registers the exercises even before __init__ imports them)
import segkit.course.exercises.s08  # noqa: F401
import segkit.course.exercises.s09  # noqa: F401
from segkit.course.exercises.checker import EXERCISES, check
from segkit.course.exercises.s07 import constant_logits_loss, error_codes, module_outputs
from segkit.course.exercises.s08 import paired_difference, rank_configs
from segkit.course.exercises.s09 import ladder_scores, member_problem, split_public_private
from segkit.models import UNet

NAMES = ["error_codes", "constant_logits_loss", "flip_tta_probs", "module_outputs", "rank_configs",
         "paired_difference", "member_problem", "split_public_private", "ladder_scores"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_its_own_checker(name, capsys):
    assert check(name, EXERCISES[name].reference) is True
    assert "✅" in capsys.readouterr().out


def assert_fails(name, fn, capsys):
    assert check(name, fn) is False
    out = capsys.readouterr().out
    assert "❌" in out and "hint:" in out


# ------------------------------------------------------------------------------------------- session 7


def test_error_codes_by_hand():
    pred = torch.tensor([[0, 1, 2], [3, 3, 0]])
    target = torch.tensor([[0, 2, 255], [3, 255, 1]])
    assert error_codes(pred, target).tolist() == [[0, 1, 2], [0, 2, 1]]


def test_error_codes_wrong_answers(capsys):
    wrong_answers = [
        lambda p, t: (p != t).long(),  # void counted as wrong
        lambda p, t: torch.where(p == 255, 2, (p != t).long()),  # void read from the prediction
        lambda p, t: torch.where(t == 255, 2, (p == t).long()),  # 0 and 1 swapped
        lambda p, t: torch.where(t == 255, 0, (p != t).long()),  # void counted as correct
    ]
    for wrong in wrong_answers:
        assert_fails("error_codes", wrong, capsys)


def test_constant_logits_loss_matches_cross_entropy_on_pixels():
    # Independent reference: torch's cross-entropy on a pixel tensor holding those logits everywhere.
    bias = torch.tensor([0.3, -1.0, 2.0, 0.0])
    counts = torch.tensor([5, 0, 2, 3])
    target = torch.repeat_interleave(torch.arange(4), counts)
    logits = bias.expand(len(target), 4)
    expected = torch.nn.functional.cross_entropy(logits, target).item()
    assert constant_logits_loss(bias, counts) == pytest.approx(expected, rel=1e-6)
    assert constant_logits_loss(torch.zeros(4), counts) == pytest.approx(math.log(4))
    shares = counts[counts > 0].double() / counts.sum()
    entropy = float(-(shares * shares.log()).sum())
    log_prior = torch.log((counts.double() / counts.sum()).clamp_min(1e-12))
    assert constant_logits_loss(log_prior, counts) == pytest.approx(entropy, rel=1e-6)


def test_constant_logits_loss_wrong_answers(capsys):
    assert_fails("constant_logits_loss", lambda b, c: math.log(len(b)), capsys)  # ignores the logits
    assert_fails("constant_logits_loss", lambda b, c: math.log2(len(b)), capsys)
    assert_fails("constant_logits_loss",  # raw logits, no softmax
                 lambda b, c: float(-(c * b).sum() / c.sum()), capsys)
    assert_fails("constant_logits_loss",  # mean over classes instead of over pixels
                 lambda b, c: float(-torch.log_softmax(b.double(), 0).mean()), capsys)


def tta_by_hand(model, images):
    model.eval()
    with torch.no_grad():
        return (model(images).softmax(1) + model(images.flip(-1)).softmax(1).flip(-1)) / 2


def test_flip_tta_student_version_passes_and_wrong_answers_fail(capsys):
    assert check("flip_tta_probs", tta_by_hand) is True

    def logits_averaged(model, images):
        model.eval()
        return ((model(images) + model(images.flip(-1)).flip(-1)) / 2).softmax(1)

    def not_flipped_back(model, images):
        model.eval()
        return (model(images).softmax(1) + model(images.flip(-1)).softmax(1)) / 2

    def height_flipped(model, images):
        model.eval()
        return (model(images).softmax(1) + model(images.flip(-2)).softmax(1).flip(-2)) / 2

    def train_mode(model, images):  # forgets model.eval(): BatchNorm uses the batch's statistics
        return (model(images).softmax(1) + model(images.flip(-1)).softmax(1).flip(-1)) / 2

    for wrong in (logits_averaged, not_flipped_back, height_flipped, train_mode):
        assert_fails("flip_tta_probs", wrong, capsys)


def hooks_by_hand(model, images, names):
    """The notebook's solution: one forward hook per name, each storing a copy under its own name."""
    outputs, handles = {}, []
    for name in names:
        def store(module, inputs, output, name=name):
            outputs[name] = output.detach().clone()
        handles.append(model.get_submodule(name).register_forward_hook(store))
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def test_module_outputs_equal_the_submodules_called_by_hand():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True)).eval()
    unet = UNet(num_classes=3, base_channels=4, depth=2).eval()
    x = torch.randn(2, 3, 16, 16)
    got = module_outputs(stack, x, ["1"])
    with torch.no_grad():
        batch_norm = stack[1](stack[0](x))
        assert (batch_norm < 0).any()  # so that the in-place ReLU after it would have changed a shared tensor
        assert torch.equal(got["1"], batch_norm)
        got = module_outputs(unet, x, ["stem", "downs.0", "downs.1", "ups.0"])
        stem = unet.stem(x)
        down0 = unet.downs[0](stem)
        down1 = unet.downs[1](down0)
        assert torch.equal(got["stem"], stem) and torch.equal(got["downs.0"], down0)
        assert torch.equal(got["downs.1"], down1) and torch.equal(got["ups.0"], unet.ups[0](down1, down0))
    assert all(not module._forward_hooks for model in (stack, unet) for module in model.modules())


def test_module_outputs_student_version_passes_and_wrong_answers_fail(capsys):
    assert check("module_outputs", hooks_by_hand) is True

    def with_hooks(keep):  # a hooks solution whose hook stores keep(name, inputs, output) under a key
        def solution(model, images, names):
            outputs, handles = {}, []
            for name in names:
                def store(module, inputs, output, name=name):
                    key, value = keep(name, inputs, output)
                    outputs[key] = value
                handles.append(model.get_submodule(name).register_forward_hook(store))
            with torch.no_grad():
                model(images)
            for handle in handles:
                handle.remove()
            return outputs
        return solution

    no_copy = with_hooks(lambda name, inputs, output: (name, output.detach()))  # the in-place ReLU changes it
    the_input = with_hooks(lambda name, inputs, output: (name, inputs[0].detach().clone()))

    def late_binding(model, images, names):  # every hook sees the loop's last name
        outputs = {}
        handles = [model.get_submodule(name).register_forward_hook(
            lambda module, inputs, output: outputs.__setitem__(name, output.detach().clone()))  # noqa: B023
            for name in names]  # fmt: skip
        with torch.no_grad():
            model(images)
        for handle in handles:
            handle.remove()
        return outputs

    for wrong in (no_copy, the_input, late_binding):
        assert_fails("module_outputs", wrong, capsys)


# ------------------------------------------------------------------------------------------- session 8


def test_rank_configs_by_hand():
    runs = [{"config": "b", "seed": 0, "miou": 0.5}, {"config": "a", "seed": 0, "miou": 0.25},
            {"config": "b", "seed": 1, "miou": 0.75}, {"config": "a", "seed": 1, "miou": 0.25}]
    rows = rank_configs(runs)
    assert [r[0] for r in rows] == ["b", "a"]
    assert rows[0][1] == 0.625 and rows[0][3] == 2
    assert rows[0][2] == pytest.approx(math.sqrt(0.125 ** 2 * 2))  # sample std of 0.5, 0.75
    assert rows[1][2] == 0.0


def test_rank_configs_wrong_answers(capsys):
    def population_std(results):
        groups = {}
        for r in results:
            groups.setdefault(r["config"], []).append(r["miou"])
        rows = [(k, statistics.fmean(v), statistics.pstdev(v), len(v)) for k, v in groups.items()]
        return sorted(rows, key=lambda r: (-r[1], r[0]))

    def ascending(results):
        return list(reversed(rank_configs(results)))

    def no_nan_for_one_run(results):
        return [(k, m, 0.0 if n == 1 else s, n) for k, m, s, n in rank_configs(results)]

    def ties_by_reverse_name(results):
        rows = sorted(rank_configs(results), key=lambda r: r[0], reverse=True)
        return sorted(rows, key=lambda r: -r[1])  # stable: equal means stay in reverse name order

    for wrong in (population_std, ascending, no_nan_for_one_run, ties_by_reverse_name):
        assert_fails("rank_configs", wrong, capsys)


def test_paired_difference_by_hand():
    mean, se = paired_difference([0.5, 0.6, 0.7], [0.6, 0.6, 0.9])  # d = 0.1, 0.0, 0.2
    assert mean == pytest.approx(0.1)
    assert se == pytest.approx(0.1 / math.sqrt(3))  # sample std of (0.1, 0, 0.2) is 0.1


def test_paired_difference_wrong_answers(capsys):
    def unpaired(a, b):
        n = len(a)
        se = math.sqrt(statistics.variance(a) / n + statistics.variance(b) / n)
        return statistics.fmean(b) - statistics.fmean(a), se

    def population(a, b):
        d = [y - x for x, y in zip(a, b, strict=True)]
        return statistics.fmean(d), statistics.pstdev(d) / math.sqrt(len(d))

    def std_not_se(a, b):
        d = [y - x for x, y in zip(a, b, strict=True)]
        return statistics.fmean(d), statistics.stdev(d)

    def a_minus_b(a, b):
        return paired_difference(b, a)

    for wrong in (unpaired, population, std_not_se, a_minus_b):
        assert_fails("paired_difference", wrong, capsys)


# ------------------------------------------------------------------------------------------- session 9

SIZES = {"test_0000": (128, 128), "test_0001": (96, 160)}


@pytest.mark.parametrize("name, size, mode, ok", [
    ("test_0000.png", (128, 128), "P", True),
    ("test_0001.png", (160, 96), "L", True),
    ("../test_0000.png", (128, 128), "P", False),
    ("a/test_0000.png", (128, 128), "P", False),
    ("test_0001.png", (96, 160), "P", False),
    ("test_0000.png", (128, 128), "RGB", False),
    ("test_0000.PNG", (128, 128), "P", False),
    ("test_0009.png", (128, 128), "P", False),
])
def test_member_problem_by_hand(name, size, mode, ok):
    assert (member_problem(name, size, mode, SIZES) is None) is ok


def test_member_problem_agrees_with_the_real_submission_checker(tmp_path):
    # The scorer's own check (segkit.competition.submission.check_submission) on real zips.
    from PIL import Image

    from segkit.competition.rules import Rules, default_size_limits
    from segkit.competition.submission import check_submission

    sizes = {"test_0000": (6, 8)}
    rules = Rules(num_classes=21, class_names=tuple(str(i) for i in range(21)),
                  **default_size_limits(list(sizes.values())))
    for name, size, mode in [("test_0000.png", (8, 6), "P"), ("test_0000.png", (8, 6), "RGB"),
                             ("test_0000.png", (6, 8), "L"), ("../test_0000.png", (8, 6), "P")]:
        png = tmp_path / "m.png"
        Image.new(mode, size).save(png)
        path = tmp_path / "s.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(png, arcname=name)
        report = check_submission(path, sizes, rules, on_mask=lambda *_: None)
        assert report.ok is (member_problem(name, size, mode, sizes) is None), (name, size, mode)


def test_member_problem_wrong_answers(capsys):
    def accepts_traversal(name, size, mode, test_sizes):  # basename only: '../x.png' slips through
        image_id = name.split("/")[-1].removesuffix(".png")
        if image_id not in test_sizes:
            return "unknown id"
        h, w = test_sizes[image_id]
        return None if tuple(size) == (w, h) and mode in ("P", "L") else "bad"

    def accepts_rgb(name, size, mode, test_sizes):
        return member_problem(name, size, "P", test_sizes)

    def swapped(name, size, mode, test_sizes):
        return member_problem(name, tuple(reversed(size)), mode, test_sizes)

    def case_insensitive(name, size, mode, test_sizes):
        return member_problem(name[:-4] + name[-4:].lower(), size, mode, test_sizes)

    def refuses_everything(name, size, mode, test_sizes):
        return "no"

    for wrong in (accepts_traversal, accepts_rgb, swapped, case_insensitive, refuses_everything):
        assert_fails("member_problem", wrong, capsys)


def test_split_public_private_is_deterministic_and_a_partition():
    ids = [f"t{i}" for i in range(11)]
    public, private = split_public_private(ids, 5, 0.5)
    assert sorted(public + private) == sorted(ids) and not set(public) & set(private)
    assert len(public) == round(0.5 * 11)
    assert split_public_private(list(reversed(ids)), 5, 0.5) == (public, private)
    order = sorted(ids)
    random.Random(5).shuffle(order)
    assert public == sorted(order[:6])


def test_split_public_private_wrong_answers(capsys):
    def unsorted_input(ids, seed, fraction):  # shuffles the ids in the order given
        order = list(ids)
        random.Random(seed).shuffle(order)
        n = min(max(round(fraction * len(order)), 1), len(order) - 1)
        return sorted(order[:n]), sorted(order[n:])

    def floor_count(ids, seed, fraction):
        order = sorted(ids)
        random.Random(seed).shuffle(order)
        n = min(max(int(fraction * len(order)), 1), len(order) - 1)
        return sorted(order[:n]), sorted(order[n:])

    def no_clamp(ids, seed, fraction):
        order = sorted(ids)
        random.Random(seed).shuffle(order)
        n = round(fraction * len(order))
        return sorted(order[:n]), sorted(order[n:])

    def first_half(ids, seed, fraction):  # no shuffle at all
        order = sorted(ids)
        n = min(max(round(fraction * len(order)), 1), len(order) - 1)
        return order[:n], order[n:]

    for wrong in (unsorted_input, floor_count, no_clamp, first_half):
        assert_fails("split_public_private", wrong, capsys)


def test_ladder_by_hand():
    # competition/README.md's example, worked out by hand.
    assert ladder_scores([0.500, 0.505, 0.523, 0.515, 0.604, 0.612], 0.01) == pytest.approx(
        [0.50, 0.50, 0.52, 0.52, 0.60, 0.61])


def test_ladder_wrong_answers(capsys):
    def running_best(scores, margin):
        out, best = [], -math.inf
        for s in scores:
            best = max(best, s)
            out.append(best)
        return out

    def no_rounding(scores, margin):
        out, shown = [], -math.inf
        for s in scores:
            if s > shown + margin:
                shown = s
            out.append(shown)
        return out

    def rounds_to_two_decimals(scores, margin):
        out, shown = [], -math.inf
        for s in scores:
            if s > shown + margin:
                shown = round(s, 2)
            out.append(shown)
        return out

    def compares_with_last_score(scores, margin):
        out, shown, last = [], -math.inf, -math.inf
        for s in scores:
            if s > last + margin:
                shown = round(s / margin) * margin
            last = s
            out.append(shown)
        return out

    for wrong in (running_best, no_rounding, rounds_to_two_decimals, compares_with_last_score):
        assert_fails("ladder_scores", wrong, capsys)
