"""smp (and timm) pretrained weights download into $SEGKIT_PRETRAINED/huggingface when it is set."""

from __future__ import annotations

import torch
from huggingface_hub import constants

from segkit.models import build_model, smp_models


def test_smp_builds_see_the_segkit_pretrained_hub_cache(tmp_path, monkeypatch):
    seen = []
    real_unet = smp_models.SMP_ARCHITECTURES["smp_unet"]

    def recording_unet(**kwargs):
        seen.append(constants.HF_HUB_CACHE)  # what hf_hub_download would use (no cache_dir given)
        return real_unet(**kwargs)

    monkeypatch.setitem(smp_models.SMP_ARCHITECTURES, "smp_unet", recording_unet)
    before = constants.HF_HUB_CACHE

    monkeypatch.setenv("SEGKIT_PRETRAINED", str(tmp_path / "weights"))
    model = build_model("smp_unet", num_classes=3, encoder_name="resnet18")
    assert seen == [str(tmp_path / "weights" / "huggingface")]
    assert constants.HF_HUB_CACHE == before  # restored after the build

    monkeypatch.delenv("SEGKIT_PRETRAINED")
    build_model("smp_unet", num_classes=3, encoder_name="resnet18")
    assert seen[1] == before  # unset: huggingface_hub's own cache, where other projects' weights are
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
