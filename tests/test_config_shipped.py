"""Every config shipped in segkit/configs/ loads, validates and builds all its parts; the VOC recipes say
what the DeepLab papers say; and build errors name the config key at fault."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from segkit.build import (
    build_dataset,
    loss_from_config,
    model_from_config,
    optimizer_from_config,
    scheduler_from_config,
    train_loader,
)
from segkit.config import ConfigError, load_config, shipped_configs, training_configs
from segkit.data import VOC_CLASSES, make_shapes

# Pretrained weights cannot be downloaded in tests: the same architectures, randomly initialised.
NO_DOWNLOADS = {
    "voc_deeplabv3_resnet50": ["model.options.pretrained_backbone=false"],
    "voc_smp_deeplabv3plus_resnet50": ["model.options.encoder_weights=null"],
}


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=4, n_val=2, n_test=2)


def tiny_overrides(name, root):
    """Point a config at the tiny shapes set, with 32-pixel crops and a short schedule."""
    return [
        "data.dataset=shapes", f"data.root={root}", "data.crop_size=32", "data.base_size=32",
        "data.batch_size=2", "data.num_workers=0", "schedule.options.slow_start_steps=0",
        "schedule.options.warmup_steps=1",
    ] + NO_DOWNLOADS.get(name, [])


def test_the_expected_configs_are_shipped():
    expected = {"shapes_unet", "voc_unet", "voc_deeplabv3_resnet50", "voc_smp_deeplabv3plus_resnet50"}
    assert expected <= set(training_configs()) <= set(shipped_configs())


@pytest.mark.parametrize("name", training_configs())
def test_shipped_config_builds_every_part_and_takes_a_step(name, tiny_shapes):
    config = load_config(name)  # as shipped, without overrides
    overrides = [o for o in tiny_overrides(name, tiny_shapes) if _applies(o, config)]
    config = load_config(name, overrides)
    dataset = build_dataset(config, "train", train=True)
    config["data"]["classes"] = list(dataset.classes)
    assert len(dataset.classes) == 21 and tuple(dataset.classes) == VOC_CLASSES

    torch.manual_seed(0)
    model = model_from_config(config)
    loss_fn = loss_from_config(config)
    optimizer = optimizer_from_config(config, model)
    scheduler = scheduler_from_config(config, optimizer, total_steps=10)
    images, masks = next(iter(train_loader(config, dataset)))
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)

    model.train()
    output = model(images)
    if isinstance(output, dict):  # an auxiliary head: the config's loss must accept the dict
        assert set(output) == {"out", "aux"}
    loss = loss_fn(output, masks)
    logits = output["out"] if isinstance(output, dict) else output
    plain_ce = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255)
    assert loss >= plain_ce - 1e-6  # CE of the main output, plus a non-negative auxiliary term
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert optimizer.param_groups[0]["lr"] > 0


def _applies(override, config):
    """Schedule options are only overridden for the schedules that have them."""
    key = override.split("=")[0]
    if key == "schedule.options.slow_start_steps":
        return "slow_start_steps" in config["schedule"]["options"]
    if key == "schedule.options.warmup_steps":
        return "warmup_steps" in config["schedule"]["options"]
    return True


def test_deeplab_recipe_values():
    """The values the DeepLabV3 paper and tensorflow/models research/deeplab use for VOC."""
    for name in ("voc_deeplabv3_resnet50", "voc_smp_deeplabv3plus_resnet50"):
        config = load_config(name)
        assert config["data"]["dataset"] == "voc"
        assert config["data"]["scale_range"] == [0.5, 2.0]
        assert config["data"]["crop_size"] == 513
        assert config["data"]["hflip"] is True
        assert config["optimizer"]["name"] == "sgd"
        assert config["optimizer"]["options"]["momentum"] == 0.9
        assert config["optimizer"]["weight_decay"] == 1e-4
        assert config["schedule"]["name"] == "poly"
        assert config["schedule"]["options"]["power"] == 0.9
        assert config["schedule"]["options"]["slow_start_steps"] > 0
        assert config["data"]["batch_size"] == 16
    deeplab = load_config("voc_deeplabv3_resnet50")["model"]
    assert deeplab["name"] == "deeplabv3"
    assert deeplab["options"]["output_stride"] == 16 and deeplab["options"]["backbone"] == "resnet50"
    smp = load_config("voc_smp_deeplabv3plus_resnet50")["model"]
    assert smp["options"]["encoder_output_stride"] == 16 and smp["options"]["encoder_name"] == "resnet50"


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.name=unte", "model.name: unknown model 'unte' (did you mean 'unet'?); known models: "),
        ("loss.name=dicee", "loss.name: unknown loss 'dicee' (did you mean 'dice'?); known losses: "),
        ("optimizer.name=adan", "optimizer.name: unknown optimizer 'adan' (did you mean 'adam'?)"),
        ("schedule.name=polyy", "schedule.name: unknown schedule 'polyy' (did you mean 'poly'?)"),
    ],
)
def test_unknown_names_are_config_errors_found_without_torch(override, key):
    """Names are checked with the config, against the registries, in a process that never imports torch."""
    code = ("import sys\nfrom segkit.config import ConfigError, load_config\n"
            f"try:\n    load_config('shapes_unet', [{override!r}])\n"
            "except ConfigError as error:\n    print(error)\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert key in out, out
    assert out.strip().endswith("torch not imported")


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.options.depht=3", "model.options: model 'unet' has no option 'depht' (did you mean "
                                  "'depth'?)"),
        ("loss.options.gama=2", "loss.options: loss ('cross_entropy'): loss 'cross_entropy' has no option "
                                "'gama'"),
        ("optimizer.options.momentun=0.9",
         "optimizer.options: optimizer 'adamw' has no option 'momentun'; its options: betas, eps, "),
        ("schedule.options.powr=0.9", "schedule.options: schedule 'poly' has no option 'powr' (did you mean "
                                      "'power'?)"),
    ],
)
def test_build_errors_name_the_config_key(override, key, tiny_shapes):
    """Options are checked against the constructors when the parts are built, in one wording (registry)."""
    config = load_config("shapes_unet", [f"data.root={tiny_shapes}", override])
    config["data"]["classes"] = list(VOC_CLASSES)
    with pytest.raises(ConfigError) as info:
        model = model_from_config(config)
        loss_from_config(config)
        optimizer = optimizer_from_config(config, model)
        scheduler_from_config(config, optimizer, total_steps=10)
    assert key in str(info.value), str(info.value)


def test_dataset_errors_name_the_key(tmp_path, tiny_shapes):
    config = load_config("shapes_unet", [f"data.root={tmp_path / 'nothing'}"])
    with pytest.raises(FileNotFoundError, match=r"data.root: no shapes dataset in .*data shapes --out"):
        build_dataset(config, "train")
    config = load_config("voc_unet", [f"data.root={tmp_path / 'nothing'}"])
    with pytest.raises(FileNotFoundError, match=r"^config: data: PASCAL VOC-2012 was not found"):
        build_dataset(config, "train")
    config = load_config("shapes_unet", [f"data.root={tiny_shapes}", "data.train_split=trian"])
    with pytest.raises(ConfigError, match=r"data: unknown split 'trian'"):
        build_dataset(config, "trian")
    config = load_config("shapes_unet", [f"data.root={tiny_shapes}", "data.classes=[a, b]"])
    with pytest.raises(ConfigError, match=r"data.classes: the shapes dataset has the classes"):
        build_dataset(config, "train")
    config = load_config("shapes_unet", ["data.dataset=folder"])
    with pytest.raises(ConfigError, match="data.root: the folder dataset needs a root"):
        build_dataset(config, "train")
