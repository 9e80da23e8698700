"""EncDec search spaces (segkit.search.space): sizes against the published count and a brute-force
enumeration of distinct torch networks, reproducible sampling, Optuna suggestions with key-path names, and
validation that names the key path of every problem."""

from __future__ import annotations

import itertools
import random

import optuna
import pytest
import torch
import yaml

from segkit.config import ConfigError
from segkit.models import build_model
from segkit.search.space import (
    continuous_parameters,
    sample,
    sample_values,
    search_space_size,
    suggest,
    validate_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

LAYER = (["H", "V", "C", "O"], range(1, 8))
# The U-Net shape of EncDecMeta's unet_searched configuration: 4 + 1 + 6 = 11 searched layers.
UNET_SHAPED = {
    "D_blocks": [[LAYER], [LAYER], [LAYER], [LAYER], []],
    "B_blocks": [[LAYER]],
    "U_blocks": [[LAYER], [LAYER], [LAYER], [LAYER], [LAYER, LAYER]],
    "base_channels": 16,
    "dropout": (0.0, 0.5),
}

YAML_SPACE = """
D_blocks:
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - []
B_blocks:
  - [[[H, V, C, O], {range: [1, 8]}]]
U_blocks:
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}]]
  - [[[H, V, C, O], {range: [1, 8]}], [[H, V, C, O], {range: [1, 8]}]]
base_channels: 16
dropout: {uniform: [0.0, 0.5]}
"""


def test_unet_shaped_space_has_22_to_the_11_architectures():
    assert search_space_size(UNET_SHAPED) == 22**11  # per layer: 3 ops x 7 dilations + the 1x1 "O"
    assert continuous_parameters(UNET_SHAPED) == ["dropout"]
    from_yaml = yaml.safe_load(YAML_SPACE)
    validate_space(from_yaml)
    assert search_space_size(from_yaml) == 22**11
    assert continuous_parameters(from_yaml) == ["dropout"]


# A small space: (2 + 1) * (2 + 2) * 1 * (1 + 1) * 2 (base channels) = 48 networks.
SMALL = {
    "D_blocks": [[(["C", "O"], [1, 2])], []],
    "B_blocks": [[(["H", "V"], range(1, 3))]],
    "U_blocks": [[("O", range(1, 4))], [(["C", "O"], 1)]],
    "base_channels": [2, 3],
    "dropout": (0.0, 0.2),
}


def raw_combinations(space):
    """Every combination of the raw values, the dilations of 1x1 layers included (no canonical form)."""
    layers = [(key, i, j, layer) for key in ("D_blocks", "B_blocks", "U_blocks")
              for i, block in enumerate(space[key]) for j, layer in enumerate(block)]

    def values(spec):
        return list(spec) if isinstance(spec, list | range) else [spec]

    axes = [list(itertools.product(values(op), values(d))) for _, _, _, (op, d) in layers]
    for base in values(space["base_channels"]):
        for chosen in itertools.product(*axes):
            config = {key: [[None] * len(block) for block in space[key]] for key in ("D_blocks", "B_blocks",
                                                                                     "U_blocks")}
            for (key, i, j, _), layer in zip(layers, chosen, strict=True):
                config[key][i][j] = layer
            yield {**config, "base_channels": base}


def network_text(options) -> str:
    """What torch says the network is: every module with its kernel, dilation, padding and channels."""
    return str(build_model("encdec", num_classes=2, **options))


def test_size_equals_a_brute_force_count_of_distinct_networks():
    torch.manual_seed(0)
    combinations = list(raw_combinations(SMALL))
    assert len(combinations) == (2 * 2) * (2 * 2) * 3 * 2 * 2  # O layers' dilations still counted here
    distinct = {network_text(options) for options in combinations}
    assert search_space_size(SMALL) == len(distinct) == 48

    # Sampling reaches exactly those networks, and nothing else.
    sampled = {}
    for seed in range(600):
        options = sample(SMALL, seed)
        sampled.setdefault(str((options["D_blocks"], options["B_blocks"], options["U_blocks"],
                                options["base_channels"])), options)
    assert len(sampled) == 48
    assert {network_text({**o, "dropout": 0.0}) for o in sampled.values()} == distinct


def test_sampling_is_reproducible_and_follows_the_rules():
    first = sample(UNET_SHAPED, 7)
    assert first == sample(UNET_SHAPED, 7) == sample(UNET_SHAPED, random.Random(7))
    assert first != sample(UNET_SHAPED, 8)
    rng = random.Random(0)
    draws = [sample(SMALL, rng) for _ in range(300)]
    for options in draws:
        for block in options["D_blocks"] + options["B_blocks"] + options["U_blocks"]:
            for op, dilation in block:
                assert op in "HVCO" and isinstance(dilation, int)
                assert dilation == 1 if op == "O" else dilation >= 1
        assert 0.0 <= options["dropout"] <= 0.2
    b_dilations = {options["B_blocks"][0][0][1] for options in draws}
    assert b_dilations == {1, 2}  # range(1, 3): the stop is excluded, as in Python
    assert {type(o["D_blocks"][0][0]) for o in draws} == {list}  # plain types, for YAML
    yaml.safe_dump(draws[0])


def test_yaml_ranges_with_a_step_and_uniform_mappings():
    specs = {"width": {"range": [8, 33, 8]}, "rate": {"uniform": [0.1, 0.2]}, "act": ["relu", "gelu"]}
    rng = random.Random(0)
    draws = [sample_values(specs, rng) for _ in range(200)]
    assert {d["width"] for d in draws} == {8, 16, 24, 32}
    assert all(0.1 <= d["rate"] <= 0.2 for d in draws) and {d["act"] for d in draws} == {"relu", "gelu"}
    assert search_space_size(specs) == 4 * 2


def test_suggest_names_parameters_by_key_path_and_replays_with_fixed_trial():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    options = suggest(SMALL, trial)
    expected_names = []
    for key in ("D_blocks", "B_blocks", "U_blocks"):
        for i, block in enumerate(SMALL[key]):
            for j, (op_spec, dilation_spec) in enumerate(block):
                op = options[key][i][j][0]
                if isinstance(op_spec, list):
                    expected_names.append(f"{key}.{i}.{j}.op")
                if op != "O" and not isinstance(dilation_spec, int):  # a 1x1 layer has no dilation parameter
                    expected_names.append(f"{key}.{i}.{j}.dilation")
    assert list(trial.params) == [*expected_names, "base_channels", "dropout"]
    assert "U_blocks.0.0.dilation" not in trial.params
    expected_ops = {"D_blocks.0.0.op": options["D_blocks"][0][0][0],
                    "B_blocks.0.0.op": options["B_blocks"][0][0][0],
                    "U_blocks.1.0.op": options["U_blocks"][1][0][0]}
    assert {k: trial.params[k] for k in expected_ops} == expected_ops
    assert trial.params["B_blocks.0.0.dilation"] == options["B_blocks"][0][0][1]
    assert suggest(SMALL, optuna.trial.FixedTrial(trial.params)) == options

    distributions = trial.distributions
    assert distributions["B_blocks.0.0.dilation"] == optuna.distributions.IntDistribution(1, 2)
    assert distributions["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.2)
    assert distributions["base_channels"] == optuna.distributions.CategoricalDistribution([2, 3])


def test_suggest_and_sample_visit_the_same_parameters():
    """One traversal: the names sample() decides are the names suggest() asks Optuna for."""
    asked = []

    class Recorder:
        def suggest_categorical(self, name, choices):
            asked.append(name)
            return choices[0]

        def suggest_int(self, name, low, high, step=1):
            asked.append(name)
            return low

        def suggest_float(self, name, low, high):
            asked.append(name)
            return low

    options = suggest(UNET_SHAPED, Recorder())
    assert options["D_blocks"][0] == [["H", 1]]
    layer_names = [n for n in asked if n.endswith(".op")]
    assert len(layer_names) == 11 and len(asked) == 11 * 2 + 1


EMPTY_D = [[], [], [], []]  # the last four down blocks of UNET_SHAPED, left empty


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"U_blocks": [[LAYER]] * 4},
         "model.options.U_blocks: expected as many upsampling blocks as D_blocks (5), got 4"),
        ({"B_blocks": []}, "model.options.B_blocks: at least one bottleneck block is needed"),
        ({"B_blocks": [[LAYER], []]},
         "model.options.B_blocks.1: a bottleneck block needs at least one layer"),
        ({"D_blocks": [[(["H", "X"], 1)], *EMPTY_D]}, "model.options.D_blocks.0.0.op: unknown op 'X'"),
        ({"D_blocks": [[("C", 0)], *EMPTY_D]},
         "model.options.D_blocks.0.0.dilation: a dilation must be an integer >= 1, got 0"),
        ({"D_blocks": [[("C", range(0, 3))], *EMPTY_D]},
         "D_blocks.0.0.dilation: a dilation must be an integer >= 1, got 0"),
        ({"D_blocks": [[("C", range(5, 5))], *EMPTY_D]}, "D_blocks.0.0.dilation: range(5, 5) is empty"),
        ({"D_blocks": [[("C", range(8, 1, -1))], *EMPTY_D]}, "a range must count upwards"),
        ({"D_blocks": [[("C", {"range": [8, 1]})], *EMPTY_D]}, "range(8, 1) is empty"),
        ({"D_blocks": [[("C", {"range": [1.5, 4]})], *EMPTY_D]},
         "D_blocks.0.0.dilation: expected {range: [start, stop]}"),
        ({"D_blocks": [[("C", (1.0, 3.0))], *EMPTY_D]},
         "D_blocks.0.0.dilation: a dilation must be an integer >= 1, got 1.0"),
        ({"D_blocks": [[("C",)], *EMPTY_D]}, "D_blocks.0.0: expected a layer (op, dilation)"),
        ({"dropout": (0.4, 0.1)},
         "model.options.dropout: uniform bounds must have low <= high, got (0.4, 0.1)"),
        ({"dropout": (0.1, "0.3")}, "model.options.dropout: expected a (low, high) pair of numbers"),
        ({"dropout": (0.1, 0.2, 0.3)}, "model.options.dropout: expected a (low, high) pair of numbers"),
        ({"dropout": {"uniform": [0.3, 0.1]}}, "model.options.dropout: uniform bounds must have low <= high"),
        ({"dropout": (0.0, 1.0)}, "model.options.dropout: dropout must be a number in [0, 1), got 1.0"),
        ({"base_channels": []}, "model.options.base_channels: an empty choice list"),
        ({"base_channels": [8, 8, 16]}, "base_channels: the choices repeat 8"),
        ({"base_channels": {"ranje": [8, 16]}},
         "base_channels: expected a value, a list of choices, {range:"),
        ({"D_block": []}, "model.options.D_block: unknown option (did you mean 'D_blocks'?)"),
        ({"U_blocks": 5}, "model.options.U_blocks: expected a list of blocks"),
        ({"U_blocks": None}, "model.options.U_blocks: missing"),
    ],
)
def test_validation_names_the_key_path(change, message):
    with pytest.raises(ConfigError) as error:
        validate_space({**UNET_SHAPED, **change}, source="search.yaml", prefix="model.options.")
    assert message in str(error.value)
    assert str(error.value).startswith("search.yaml:")


def test_validation_collects_every_problem_at_once():
    space = {**UNET_SHAPED, "B_blocks": [[]], "dropout": (0.5, 0.1), "base_channels": 0}
    with pytest.raises(ConfigError) as error:
        validate_space(space)
    assert len(error.value.problems) == 3


def test_input_sizes_must_be_divisible_by_two_to_the_depth():
    validate_space(UNET_SHAPED, input_sizes={"data.crop_size": 96})  # 96 = 3 * 2^5
    with pytest.raises(ConfigError, match=r"data.crop_size: 100 is not divisible by 2\^5 = 32"):
        validate_space(UNET_SHAPED, input_sizes={"data.crop_size": 100})


def test_the_tuple_check_that_encdecmeta_never_ran():
    """EncDecMeta's validator checked tuples in a branch it never reached; these must be refused here."""
    for bad in [(0.5, "a"), ("low", "high"), (0.3,), (0.3, 0.1)]:
        with pytest.raises(ConfigError, match="model.options.dropout"):
            validate_space({**UNET_SHAPED, "dropout": bad}, prefix="model.options.")
    with pytest.raises(ConfigError, match="choices repeat 'V'"):  # EncDecMeta's ['H', 'V', 'V', 'O'] typo
        validate_space({**UNET_SHAPED, "B_blocks": [[(["H", "V", "V", "O"], range(1, 8))]]})
    with pytest.raises(ConfigError):
        sample({**UNET_SHAPED, "dropout": (0.3, 0.1)}, 0)
