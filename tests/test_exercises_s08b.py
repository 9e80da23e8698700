"""Exercises of session 8b: each reference passes its own checker, plausible wrong answers fail, and the
references agree with independent computations: segkit's search_space_size and a brute-force enumeration
of distinct networks; Optuna's own SuccessiveHalvingPruner; a brute force over all trellis paths and
segkit's decode_path; the shapes torch computes when it runs the encoder."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import optuna
import pytest
import torch
import yaml

import segkit.course.exercises.s08b  # noqa: F401  (registers the exercises even before __init__ imports them)
from segkit.config import find_config
from segkit.course.exercises.checker import EXERCISES, check
from segkit.course.exercises.s08b import (
    count_architectures,
    dp_nas_output_shape,
    successive_halving,
    transition_probabilities,
    viterbi_path,
)
from segkit.models.deep_prior.archstring import out_channels, parse_arch, spatial_sizes
from segkit.models.deep_prior.network import RandomEncoder
from segkit.search.autodeeplab import beta_probabilities, decode_path
from segkit.search.space import search_space_size

NAMES = ["count_architectures", "successive_halving", "viterbi_path", "dp_nas_output_shape"]


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_its_own_checker(name, capsys):
    assert check(name, EXERCISES[name].reference) is True
    assert "✅" in capsys.readouterr().out


def assert_fails(name, fn, capsys):
    assert check(name, fn) is False
    out = capsys.readouterr().out
    assert "❌" in out and "hint:" in out


def all_cases(name):
    return EXERCISES[name].make_cases(np.random.default_rng(0))


# ------------------------------------------------------------------------------------ search-space size


def space_of(layers):
    """An EncDec search space holding `layers` (bottleneck first, the rest split over down/up blocks)."""
    layers = [(list(ops), dilations) for ops, dilations in layers]
    if not layers:
        return {"D_blocks": [[]], "B_blocks": [[("C", 1)]], "U_blocks": [[]]}
    return {"D_blocks": [[layer] for layer in layers[1:]], "B_blocks": [[layers[0]]],
            "U_blocks": [[] for _ in layers[1:]]}


def distinct_networks(layers) -> int:
    """Brute force: every (op, dilation) combination, with O's dilation set to 1, counted once."""
    per_layer = [{(op, 1 if op == "O" else d) for op in ops for d in dilations} for ops, dilations in layers]
    return len(set(itertools.product(*per_layer)))


def test_count_matches_search_space_size_and_a_brute_force():
    assert count_architectures([(["H", "V", "C", "O"], range(1, 8))] * 11) == 22**11 == 584_318_301_411_328
    for description, (layers,) in all_cases("count_architectures"):
        assert count_architectures(layers) == search_space_size(space_of(layers)), description
    small = [(["C", "O"], [1, 2, 4]), (["H", "V", "O"], range(1, 3)), (["O"], range(1, 6)), (["C"], [2])]
    assert count_architectures(small) == distinct_networks(small) == 4 * 5 * 1 * 1


def test_count_of_the_shipped_search_config():
    # The shipped space times its base_channels choices is what segkit search reports for it.
    space = yaml.safe_load(find_config("search_encdec_shapes").read_text())["model"]["options"]
    layers = [(ops, range(*spec["range"])) for key in ("D_blocks", "B_blocks", "U_blocks")
              for block in space[key] for ops, spec in block]
    python_space = {key: [[(ops, range(*spec["range"])) for ops, spec in block] for block in space[key]]
                    for key in ("D_blocks", "B_blocks", "U_blocks")}
    assert count_architectures(layers) == 10**3 * 13**2 * 10**2 * 7
    assert count_architectures(layers) * len(space["base_channels"]) == search_space_size(
        {**python_space, "base_channels": space["base_channels"]})


def test_count_wrong_answers(capsys):
    wrong_answers = [
        lambda layers: math.prod(len(ops) * len(d) for ops, d in layers),  # O counted with every dilation
        lambda layers: math.prod(sum(0 if op == "O" else len(d) for op in ops) for ops, d in layers),
        lambda layers: sum(sum(1 if op == "O" else len(d) for op in ops) for ops, d in layers),  # a sum
        lambda layers: math.prod(sum(1 if op == "O" else len(d) + 1 for op in ops) for ops, d in layers),
        lambda layers: float(math.prod(sum(1 if op == "O" else len(d) for op in ops) for ops, d in layers)),
    ]
    for wrong in wrong_answers:
        assert_fails("count_architectures", wrong, capsys)


# ----------------------------------------------------------------------------------- successive halving


def optuna_epochs(curves, grace, factor, max_epochs) -> list[int]:
    """The epochs Optuna's SuccessiveHalvingPruner lets each trial train, trials run one after the other
    and asked to prune after every epoch but the last (as segkit.search.asha.ReportToTrial does)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=grace,
                                                                              reduction_factor=factor))
    trained = []
    for curve in curves:
        trial = study.ask()
        for epoch in range(1, max_epochs + 1):
            trial.report(curve[epoch - 1], epoch)
            if epoch < max_epochs and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, max(curve))
        trained.append(epoch)
    return trained


def test_successive_halving_matches_optuna():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cases = [args for _, args in all_cases("successive_halving")]
    rng = np.random.default_rng(1)
    for _ in range(20):  # random curves, some values repeating (rounded to 2 decimals)
        grace, factor = int(rng.integers(1, 3)), int(rng.integers(2, 4))
        max_epochs = int(rng.integers(grace + 1, 20))
        trials = int(rng.integers(1, 15))
        curves = [[round(float(v), 2) for v in rng.uniform(0, 1, max_epochs)] for _ in range(trials)]
        cases.append((curves, grace, factor, max_epochs))
    for curves, grace, factor, max_epochs in cases:
        assert successive_halving(curves, grace, factor, max_epochs) == optuna_epochs(
            curves, grace, factor, max_epochs)


def test_successive_halving_by_hand():
    # grace 1, factor 2, 3 epochs: rungs at epochs 1 and 2. Trial 0 goes on alone; trial 1 (0.1) is below
    # the best of [0.9, 0.1]; trial 2 (0.5) below the best of 3 values; trial 3 (0.6) is 2nd of 4 and the
    # top 4 // 2 = 2 go on; at rung 2 it meets [0.9, 0.6]: keep 1, 0.6 < 0.9, stopped after 2 epochs.
    curves = [[0.9] * 3, [0.1] * 3, [0.5] * 3, [0.6] * 3]
    assert successive_halving(curves, 1, 2, 3) == [3, 1, 1, 2]


def asha_variant(keep_rule=None, ties_lose=False, synchronous=False, record_pruned=True, linear_rungs=False):
    """A successive halving with one plausible mistake."""

    def rungs(grace, factor, max_epochs):
        found, k = [], 0
        while (rung := grace + factor * k if linear_rungs else grace * factor**k) < max_epochs:
            found.append(rung)
            k += 1
        return found

    def run(curves, grace, factor, max_epochs):
        keep_of = keep_rule or (lambda n, factor: max(n // factor, 1))
        trained = [max_epochs] * len(curves)
        if synchronous:  # judges a rung once every trial has reached it (classic, not asynchronous)
            alive = list(range(len(curves)))
            for rung in rungs(grace, factor, max_epochs):
                ranked = sorted((curves[i][rung - 1] for i in alive), reverse=True)
                cut = ranked[keep_of(len(ranked), factor) - 1]
                for i in [i for i in alive if curves[i][rung - 1] < cut]:
                    trained[i] = rung
                    alive.remove(i)
            return trained
        recorded = {}
        for i, curve in enumerate(curves):
            for rung in rungs(grace, factor, max_epochs):
                value = curve[rung - 1]
                values = recorded.get(rung, []) + [value]
                if ties_lose:  # rank = position from the top, a tie taking the worse position
                    pruned = len(values) - sorted(values).index(value) > keep_of(len(values), factor)
                else:
                    pruned = value < sorted(values, reverse=True)[keep_of(len(values), factor) - 1]
                if record_pruned or not pruned:
                    recorded.setdefault(rung, []).append(value)
                if pruned:
                    trained[i] = rung
                    break
        return trained

    return run


def test_successive_halving_wrong_answers(capsys):
    wrong_answers = [
        asha_variant(keep_rule=lambda n, factor: math.ceil(n / factor)),  # rounds the top 1/factor up
        asha_variant(keep_rule=lambda n, factor: n // factor or n),  # first trials: kept whatever they score
        asha_variant(ties_lose=True),  # a tie is pruned
        asha_variant(synchronous=True),  # waits for all trials (not asynchronous)
        asha_variant(record_pruned=False),  # forgets the values of pruned trials
        asha_variant(linear_rungs=True),  # rungs grace + factor * k
    ]
    assert asha_variant()(*all_cases("successive_halving")[0][1]) == successive_halving(
        *all_cases("successive_halving")[0][1])  # the variants' core is right
    for wrong in wrong_answers:
        assert_fails("successive_halving", wrong, capsys)


# ------------------------------------------------------------------------------------- Viterbi decoding


def brute_force_path(p) -> list[int]:
    """Try every sequence of moves (up, same, down) from stride 4; keep the most probable valid one."""
    best, best_probability = None, -1.0
    for moves in itertools.product((-1, 0, 1), repeat=p.shape[0]):
        level, probability, levels = 0, 1.0, []
        for layer, move in enumerate(moves):
            if not 0 <= level + move <= 3:
                probability = 0.0
                break
            probability *= float(p[layer, level, move + 1])
            level += move
            levels.append(level)
        if probability > best_probability:
            best, best_probability = levels, probability
    return [4 * 2**level for level in best]


def test_viterbi_matches_brute_force_and_decode_path():
    generator = torch.Generator().manual_seed(0)
    for layers in range(1, 8):
        for _ in range(5):
            beta = torch.randn(layers, 4, 3, generator=generator) * 2
            p = transition_probabilities(beta)
            assert torch.allclose(p, beta_probabilities(beta.double()))  # the same softmax as segkit's
            assert viterbi_path(p) == brute_force_path(p) == decode_path(beta)
    for description, (p,) in all_cases("viterbi_path"):
        if p.shape[0] <= 8:
            assert viterbi_path(p) == brute_force_path(p), description


def test_viterbi_by_hand():
    # L = 2 by hand: stay-stay 0.6 * 0.55 = 0.33, down-stay 0.4 * 0.99 = 0.396 wins; greedy would stay.
    p = transition_probabilities(torch.zeros(2, 4, 3))
    p[0, 0] = torch.tensor([0.0, 0.6, 0.4], dtype=torch.float64)
    p[1, 0] = torch.tensor([0.0, 0.55, 0.45], dtype=torch.float64)
    p[1, 1] = torch.tensor([0.005, 0.99, 0.005], dtype=torch.float64)
    assert viterbi_path(p) == [8, 8]


def greedy_path(p):
    level, path = 0, []
    for layer in range(p.shape[0]):
        move = int(torch.argmax(p[layer, level]))
        level += move - 1
        path.append(4 * 2**level)
    return path


def viterbi_variant(start_anywhere=False, levels=False, with_stem=False):
    def run(p):
        best = {s: (0.0, [s]) for s in (range(4) if start_anywhere else [0])}
        for layer in range(p.shape[0]):
            reached = {}
            for source, (score, path) in best.items():
                for move, target in enumerate((source - 1, source, source + 1)):
                    probability = float(p[layer, source, move])
                    if 0 <= target <= 3 and probability > 0:
                        candidate = score + math.log(probability)
                        if target not in reached or candidate > reached[target][0]:
                            reached[target] = (candidate, path + [target])
            best = reached
        path = max(best.values(), key=lambda item: item[0])[1]
        path = path if with_stem else path[1:]
        return path if levels else [4 * 2**level for level in path]

    return run


def test_viterbi_wrong_answers(capsys):
    assert viterbi_variant()(_greedy_case()) == viterbi_path(_greedy_case())  # the variant's core is right
    wrong_answers = [
        greedy_path,  # the best move at each layer
        viterbi_variant(start_anywhere=True),  # the stem is at stride 4, not anywhere
        viterbi_variant(levels=True),  # levels 0..3 instead of strides
        viterbi_variant(with_stem=True),  # L + 1 strides: the stem is not a searched layer
    ]
    for wrong in wrong_answers:
        assert_fails("viterbi_path", wrong, capsys)


def _greedy_case():
    return next(args[0] for description, args in all_cases("viterbi_path") if "greedy" in description)


# ------------------------------------------------------------------------------ DP-NAS architecture strings


def random_arch(rng: random.Random) -> str:
    layers = []
    for _ in range(rng.randint(0, 4)):
        if rng.random() < 0.6:
            kernel = rng.choice([1, 3, 5, 7])
            stride = rng.choice([1, 1, 2])
            skip = 1 if stride == 1 and rng.random() < 0.3 else 0
            pad = (kernel - 1) // 2 if skip else rng.randint(0, kernel // 2)
            layers.append(f"C({rng.choice([4, 8, 16])},{kernel},{stride},{pad},{skip})")
        else:
            size = rng.choice([2, 3, 4])
            layers.append(f"P({size},{rng.choice([1, 2, size])})")
    return "[" + ", ".join(layers) + "]"


def test_output_shape_matches_torch_and_archstring():
    rng = random.Random(0)
    cases = [args for _, args in all_cases("dp_nas_output_shape")]
    cases += [(random_arch(rng), rng.randint(24, 70)) for _ in range(30)]
    for arch, size in cases:
        layers = parse_arch(arch)
        sizes = spatial_sizes(layers, size)
        if sizes and min(sizes[-1]) < 1:
            continue  # infeasible for this size: torch would refuse to run it
        features = RandomEncoder(arch)(torch.zeros(1, 3, size, size))
        assert dp_nas_output_shape(arch, size) == (features.shape[1], features.shape[2]), arch
        assert dp_nas_output_shape(arch, size) == (out_channels(layers), sizes[-1][0] if sizes else size)


def test_output_shape_wrong_answers(capsys):
    def variant(conv_size, pool_size, first_channels=False, swap=False, split=False):
        def run(arch, n):
            channels, size, seen_conv = 3, n, False
            tokens = arch.strip("[] ").split(", ") if split else None
            if split and tokens == [""]:
                tokens = []
            found = ([(t[0], t[2:-1]) for t in tokens] if split
                     else segkit.course.exercises.s08b.LAYER_PATTERN.findall(arch))
            for kind, fields in found:
                values = [int(v) for v in fields.split(",")]
                if kind == "C":
                    if not (first_channels and seen_conv):
                        channels = values[0]
                    seen_conv = True
                    size = conv_size(size, *values[1:4])
                else:
                    size = pool_size(size, *values)
            return (size, channels) if swap else (channels, size)

        return run

    floor_conv = lambda n, k, s, p: (n + 2 * p - k) // s + 1  # noqa: E731
    floor_pool = lambda n, w, s: (n - w) // s + 1  # noqa: E731
    wrong_answers = [
        variant(lambda n, k, s, p: math.ceil((n + 2 * p - k) / s) + 1,  # ceilings instead of floors
                lambda n, w, s: math.ceil((n - w) / s) + 1),
        variant(floor_conv, lambda n, w, s: n // 2),  # every pool halves
        variant(lambda n, k, s, p: (n - k) // s + 1, floor_pool),  # padding ignored
        variant(lambda n, k, s, p: n + 2 * p - k + 1, floor_pool),  # stride ignored
        variant(floor_conv, floor_pool, first_channels=True),  # channels of the first conv
        variant(floor_conv, floor_pool, swap=True),  # (size, channels)
        variant(floor_conv, floor_pool, split=True),  # assumes exactly ", " between layers
    ]
    assert variant(floor_conv, floor_pool)("[C(16,3,1,1,0), P(2,2)]", 64) == (16, 32)
    for wrong in wrong_answers:
        assert_fails("dp_nas_output_shape", wrong, capsys)
