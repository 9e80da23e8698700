"""bench/amp.py times the step it claims to time: the config's model and loss, in the dtype and layout named.

The timing itself is not tested (no timed assertions); these tests check that each setting really changes
what it says (autocast dtype, memory layout), that the fp32 step computes the config's loss (checked
against a loss written out by hand with torch.nn.functional), and that the same-work check refuses a
setting whose loss drifts.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

BENCH = Path(__file__).resolve().parent.parent / "bench" / "amp.py"


@pytest.fixture(scope="module")
def amp_bench():
    spec = importlib.util.spec_from_file_location("bench_amp", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(amp_bench):
    config = amp_bench.load_bench_config("voc_deeplabv3_resnet50")
    torch.manual_seed(0)
    model = amp_bench.model_from_config(config, num_classes=amp_bench.NUM_CLASSES)
    batch = amp_bench.make_batch(2, 64)
    return config, model, batch


def test_pretrained_weights_are_switched_off(amp_bench):
    config = amp_bench.load_bench_config("voc_deeplabv3_resnet50")
    assert config["model"]["options"]["pretrained_backbone"] is False
    assert config["model"]["name"] == "deeplabv3" and config["model"]["options"]["backbone"] == "resnet50"


def test_batch_has_every_kind_of_pixel(amp_bench):
    images, masks = amp_bench.make_batch(2, 64)
    assert images.shape == (2, 3, 64, 64) and masks.shape == (2, 64, 64) and masks.dtype == torch.int64
    void = (masks == 255).float().mean().item()
    assert 0.05 < void < 0.15  # about 10% void
    assert set(masks[masks != 255].unique().tolist()) <= set(range(21))


def test_fp32_first_step_loss_is_the_config_loss_by_hand(amp_bench, setup, tmp_path):
    config, model, batch = setup
    losses = amp_bench.first_step_losses(config, model, batch, ["fp32"], "cpu")
    # The config's loss written out: cross-entropy on "out" + 0.5 x cross-entropy on "aux", void ignored.
    reference_model = amp_bench.without_dropout(model).train()
    images, masks = batch
    with torch.no_grad():
        output = reference_model(images)
    expected = (F.cross_entropy(output["out"], masks, ignore_index=255)
                + 0.5 * F.cross_entropy(output["aux"], masks, ignore_index=255))  # fmt: skip
    assert losses["fp32"] == pytest.approx(expected.item(), rel=1e-5)


def test_without_dropout_leaves_the_original_alone(amp_bench, setup):
    _, model, _ = setup
    copy_ = amp_bench.without_dropout(model)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p > 0 for m in dropouts)
    assert all(m.p == 0 for m in copy_.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("setting, dtype, layout", [
    ("fp32", torch.float32, torch.contiguous_format),
    ("bf16+cl", torch.bfloat16, torch.channels_last),
    ("fp16", torch.float16, torch.contiguous_format),
])  # fmt: skip
def test_setting_changes_dtype_and_layout(amp_bench, setup, tmp_path, setting, dtype, layout):
    config, model, batch = setup
    trainer = amp_bench.make_trainer(config, model, batch, setting, "cpu", str(tmp_path / setting))
    first_conv = trainer.model.backbone.conv1
    assert first_conv.weight.is_contiguous(memory_format=layout)
    seen = {}
    handle = first_conv.register_forward_hook(lambda module, inputs, output: seen.update(
        dtype=output.dtype, channels_last=inputs[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        loss = trainer.train_step([batch])
    finally:
        handle.remove()
    assert seen["dtype"] == dtype
    assert seen["channels_last"] == (layout == torch.channels_last)
    assert math.isfinite(loss)


def test_same_work_check(amp_bench):
    assert amp_bench.check_same_work({"fp32": 3.0, "fp32+cl": 3.001, "bf16": 3.05, "fp16": 2.98}) == []
    problems = amp_bench.check_same_work({"fp32": 3.0, "bf16": 3.1, "fp16+cl": float("nan")})
    assert len(problems) == 2
    assert problems[0].startswith("bf16:") and "0.0333" in problems[0]
    assert problems[1].startswith("fp16+cl:") and "nan" in problems[1]


def test_first_step_starts_from_the_same_weights(amp_bench, setup):
    config, model, batch = setup
    before = copy.deepcopy(model.state_dict())
    losses = amp_bench.first_step_losses(config, model, batch, ["fp32", "fp32+cl"], "cpu")
    # The initial model is copied, never trained; fp32 in either layout gives the same loss.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert losses["fp32+cl"] == pytest.approx(losses["fp32"], rel=1e-5)
