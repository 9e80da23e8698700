"""Configs that cannot take the machine down, and mistakes named where they are: the training-memory
estimate (checked by hand and against the canonical UNet's parameter count) refuses a model before a
byte of it is allocated, unless overridden; out-of-range model options, devices that do not exist, option
values of the wrong type and a mask holding a value outside the classes are each reported with the key or
the file at fault."""

from __future__ import annotations

import resource
import shutil

import numpy as np
import pytest
from torch import nn

from segkit.build import check_training_memory
from segkit.cli import main
from segkit.config import ConfigError, load_config
from segkit.data import make_shapes, read_mask, write_mask
from segkit.models import build_model
from segkit.models.footprint import training_footprint


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=8, n_val=4, n_test=0)


def tiny(root, runs) -> list[str]:
    return [f"data.root={root}", "data.crop_size=32", "data.base_size=32", "data.scale_range=[1.0, 1.0]",
            "data.batch_size=4", "data.eval_batch_size=4", "model.options.base_channels=4",
            "model.options.depth=2", "train.epochs=1", "train.device=cpu", "train.print_table=false",
            "train.progress_bar=false", f"run.dir={runs}", "run.name=guarded"]


def error_of(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def peak_memory_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_the_footprint_of_a_small_net_by_hand():
    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))

    footprint = training_footprint(build, (2, 3, 8, 8), optimizer_slots=2)
    assert footprint.parameters == (3 * 4 * 9 + 4) + (4 * 2 + 2)  # 122
    assert footprint.state_bytes == 4 * 122 * (2 + 2)  # weights, gradients, Adam's two moments
    # leaf outputs: conv 2x4x8x8, ReLU 2x4x8x8, conv 2x2x8x8 float32 values
    assert footprint.activation_bytes == 4 * (512 + 512 + 256)


def test_the_footprint_counts_the_canonical_unet_without_building_it():
    footprint = training_footprint(lambda: build_model("unet", num_classes=21), (1, 3, 64, 64))
    assert footprint.parameters == 31_038_933  # the canonical PyTorch UNet (REFERENCES.md)


def test_a_model_too_big_for_the_machine_is_refused_before_it_is_built(shapes_root, tmp_path, capsys):
    before = peak_memory_kb()
    err = error_of(capsys, "train", "shapes_unet", "--set", *tiny(shapes_root, tmp_path),
                   "model.options.base_channels=512", "model.options.depth=4", "data.crop_size=512",
                   "data.batch_size=16")
    assert "model.options: training unet with options {'base_channels': 512, 'depth': 4} needs about " in err
    expected = training_footprint(lambda: build_model("unet", 21, base_channels=512, depth=4),
                                  (16, 3, 512, 512), optimizer_slots=2)  # shapes_unet trains with AdamW
    assert f"{expected.parameters:,} parameters" in err and f"({expected.total_bytes:,} bytes)" in err
    assert "set train.check_memory=false to build it anyway" in err
    assert peak_memory_kb() - before < 1_000_000  # nothing of its ~2 billion parameters was allocated
    assert not (tmp_path / "guarded").exists()


def test_the_memory_check_compares_with_the_limit_and_can_be_switched_off(shapes_root, tmp_path):
    config = load_config("shapes_unet", tiny(shapes_root, tmp_path))
    config["data"]["classes"] = None
    total = check_training_memory(config, 21, available=10**15).total_bytes
    assert check_training_memory(config, 21, available=total).total_bytes == total
    with pytest.raises(ConfigError, match="the limit is"):
        check_training_memory(config, 21, available=total - 1)
    config["train"]["check_memory"] = False
    assert check_training_memory(config, 21, available=total - 1) is None


def test_out_of_range_model_options_fail_at_once(shapes_root, tmp_path, capsys):
    before = peak_memory_kb()
    err = error_of(capsys, "train", "shapes_unet", "--set", *tiny(shapes_root, tmp_path),
                   "model.options.depth=12")
    assert "model.options: UNet: depth must be <= 8 and base_channels <= 1024, got depth=12" in err
    assert peak_memory_kb() - before < 1_000_000


@pytest.mark.parametrize(("setting", "message"), [
    ("train.device=gpu", "train.device: device 'gpu' is not a device name: expected auto, cpu, cuda, cuda:N "
                         "or mps"),
    ("optimizer.options.momentum=abc", "optimizer.options.momentum: expected a number, got 'abc' (str)"),
    ("model.options.depth=two", "model.options.depth: expected an integer, got 'two' (str)"),
    ("model.options.base_channels=4.5", "model.options.base_channels: expected an integer, got 4.5 (float)"),
])
def test_wrong_values_name_the_key_and_what_was_expected(shapes_root, tmp_path, capsys, setting, message):
    extra = ["optimizer.name=sgd"] if setting.startswith("optimizer.options.momentum") else []
    err = error_of(capsys, "train", "shapes_unet", "--set", *tiny(shapes_root, tmp_path), *extra, setting)
    assert message in err
    assert "Traceback" not in err and not (tmp_path / "guarded").exists()


def test_a_device_this_machine_lacks_is_named(shapes_root, tmp_path, capsys):
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    err = error_of(capsys, "train", "shapes_unet", "--set", *tiny(shapes_root, tmp_path),
                   f"train.device=cuda:{count}")
    assert f"train.device: device 'cuda:{count}'" in err
    assert ("this machine has no CUDA device" if count == 0 else "does not exist") in err


def test_a_mask_value_outside_the_classes_names_the_mask_file(shapes_root, tmp_path, capsys):
    root = tmp_path / "shapes"
    shutil.copytree(shapes_root, root)
    masks = root / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train.txt"
    train_ids = split.read_text().split()
    broken = masks / f"{train_ids[5]}.png"
    mask = read_mask(broken).copy()
    mask[10:14, 10:14] = 50  # no such class among VOC's 21
    write_mask(broken, mask)
    assert int(np.asarray(read_mask(broken)).max()) >= 50
    err = error_of(capsys, "train", "shapes_unet", "--set", *tiny(root, tmp_path))
    assert err.count("\n") == 1
    assert f"mask value 50 in mask file {broken} (training sample 5): masks must hold class indices 0..20 " \
           "or the void label 255 (data.ignore_index)" in err
