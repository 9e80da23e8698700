"""segkit.config: loading, defaults, overrides and one test per kind of validation error."""

from __future__ import annotations

import pytest
import yaml

from segkit.config import (
    SCHEMA,
    ConfigError,
    apply_overrides,
    find_config,
    load_config,
    parse_override,
    save_config,
    shipped_configs,
    validate_config,
)


def write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def problems_of(raw):
    with pytest.raises(ConfigError) as info:
        validate_config(raw, source="exp.yaml")
    return info.value.problems


def test_empty_config_resolves_to_the_schema_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    for section, fields in SCHEMA.items():
        for key, field in fields.items():
            if (section, key) != ("run", "name"):
                assert config[section][key] == field.default, f"{section}.{key}"
    assert config["run"]["name"] == "exp"  # the file's name


def test_given_values_are_kept_and_converted(tmp_path):
    path = write(tmp_path, "optimizer:\n  lr: 1e-3\n  weight_decay: 0\ndata:\n  scale_range: [1, 2]\n")
    config = load_config(path)
    # PyYAML reads "1e-3" (no dot) as a string; the schema turns it into a number.
    assert config["optimizer"]["lr"] == 0.001 and isinstance(config["optimizer"]["weight_decay"], float)
    assert config["data"]["scale_range"] == [1.0, 2.0]


def test_unknown_keys_and_sections_are_named_with_a_hint():
    problems = problems_of({"train": {"epoch": 3}, "optimiser": {}})
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in problems
    assert any(p.startswith("optimiser: unknown section (did you mean 'optimizer'?)") for p in problems)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer >= 1, got 'ten' (str)"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer >= 1, got 2.5 (float)"),
        ({"train": {"channels_last": 1}}, "train.channels_last: expected true or false, got 1 (int)"),
        ({"data": {"hflip": "yes please"}}, "data.hflip: expected true or false"),
        ({"data": {"mean": [0.5, 0.5]}}, "data.mean: expected a list of 3 numbers, got [0.5, 0.5] (list)"),
        ({"model": {"options": [1, 2]}}, "model.options: expected a mapping of options (key: value)"),
        ({"data": {"crop_size": True}}, "data.crop_size: expected an integer >= 1, got True (bool)"),
        ({"run": {"name": 3}}, "run.name: expected a string or null, got 3 (int)"),
        ({"model": "unet"}, "model: expected a mapping of keys, got 'unet' (str)"),
    ],
)
def test_wrong_types_name_the_key_and_what_was_expected(raw, expected):
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"optimizer": {"lr": -0.1}}, "optimizer.lr: expected a number > 0, got -0.1 (float)"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr: expected a number > 0, got 0 (int)"),
        ({"optimizer": {"lr": ".nan"}}, "optimizer.lr: expected a number > 0"),
        ({"data": {"dataset": "coco"}},
         "data.dataset: expected one of 'voc', 'shapes', 'folder', got 'coco' (str)"),
        ({"data": {"std": [0.2, 0.0, 0.2]}}, "data.std: expected a list of 3 numbers each > 0"),
        ({"data": {"scale_range": [2.0, 0.5]}}, "data.scale_range: expected [low, high] with low <= high"),
        ({"data": {"num_workers": -1}}, "data.num_workers: expected an integer >= 0, got -1"),
        ({"train": {"amp": "float16"}}, "train.amp: expected one of 'bf16', 'fp16' or null, got 'float16'"),
        ({"train": {"amp": False}}, "train.amp: expected one of 'bf16', 'fp16' or null, got False (bool) "
                                    "(YAML reads yes/no/on/off/true/false as booleans"),
        ({"train": {"clip_grad_norm": 0}}, "train.clip_grad_norm: expected a number > 0 or null"),
        ({"train": {"overfit_batches": 2, "limit_batches": 3}}, "train.limit_batches: cannot be combined"),
    ],
)
def test_impossible_values_name_the_key_and_what_was_expected(raw, expected):
    assert any(p.startswith(expected) for p in problems_of(raw)), problems_of(raw)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, {"optimizer": {"lr": -1}, "train": {"epoch": 3, "seed": -2}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 3 problems")
    for key in ("optimizer.lr", "train.epoch", "train.seed"):
        assert key in message


def test_overrides_are_parsed_as_yaml_values():
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("data.scale_range=[0.5, 1.5]") == (["data", "scale_range"], [0.5, 1.5])
    assert parse_override("data.root=null") == (["data", "root"], None)
    assert parse_override("train.channels_last=true") == (["train", "channels_last"], True)
    assert parse_override("run.name=a=b") == (["run", "name"], "a=b")


def test_overrides_set_values_and_free_options(tmp_path):
    path = write(tmp_path, {"model": {"name": "unet", "options": {"depth": 4}}, "train": {"epochs": 3}})
    config = load_config(path, ["train.epochs=7", "model.options.base_channels=8", "optimizer.lr=0.5"])
    assert config["train"]["epochs"] == 7
    assert config["model"]["options"] == {"depth": 4, "base_channels": 8}
    assert config["optimizer"]["lr"] == 0.5
    # the file on disk and the dict it was read from are not modified
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 3


def test_override_values_are_validated_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer\.lr: expected a number > 0, got -0\.1"):
        load_config(write(tmp_path, ""), ["optimizer.lr=-0.1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "train.epoch: unknown key (did you mean 'train.epochs'?)"),
        ("optimizer.learning_rate=0.1", "optimizer.learning_rate: unknown key"),
        ("train.epochs.x=3", "train.epochs.x: unknown key"),
        ("train=3", "train: unknown key"),
        ("train.epochs", "expected key.path=value"),
        ("optimizer.lr=[0.1", "is not valid YAML"),
    ],
)
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError) as info:
        apply_overrides({}, [override])
    assert message in str(info.value)


def test_saved_config_loads_back_identically(tmp_path):
    config = load_config(write(tmp_path, {"train": {"epochs": 2}, "model": {"options": {"depth": 2}}}))
    saved = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(saved) == config


def test_config_files_are_found_by_path_or_shipped_name(tmp_path):
    names = shipped_configs()
    assert "shapes_unet" in names
    assert find_config("shapes_unet").name == "shapes_unet.yaml"
    assert find_config("shapes_unet.yaml") == find_config("shapes_unet")
    with pytest.raises(FileNotFoundError, match=r"did you mean 'shapes_unet'\?.*shipped configs: "):
        find_config("shapes_unte")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [1,\n"))
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
