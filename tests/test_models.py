"""build_model and the conventions every model follows: registry, errors, output shapes and types, parameter
names, and pretrained weights (offline: a clear error at once; cached: loaded without the network)."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch
import torchvision
from torchvision.models.segmentation import deeplabv3_resnet50

import segkit.models.deeplabv3
import segkit.models.fcn
from segkit.models import MODELS, PretrainedWeightsUnavailable, build_model, count_parameters, model_options
from segkit.registry import RegistryError

# Small settings per model so that the whole registry builds and runs in a few seconds.
SMALL_OPTIONS = {
    "unet": {"base_channels": 4, "depth": 3},
    "deeplabv3": {"backbone": "resnet18", "output_stride": 16},
    "fcn": {},
    "smp_unet": {"encoder_name": "resnet18"},
    "unetplusplus": {"encoder_name": "resnet18"},
    "linknet": {"encoder_name": "resnet18"},
    "fpn": {"encoder_name": "resnet18"},
    "pspnet": {"encoder_name": "resnet18"},
    "deeplabv3plus": {"encoder_name": "resnet18"},
    "encdec": {"D_blocks": [[], [], []], "B_blocks": [[("C", 1)]], "U_blocks": [[], [], []],
               "base_channels": 4},
    "deep_prior": {"arch": "[C(8,3,1,1,0), P(2,2), P(2,2), C(8,3,1,1,1), P(2,2)]"},
    "autodeeplab": {"genotype": [[("sep_conv_3x3", 0), ("skip_connect", 1)],
                                 [("dil_conv_3x3", 1), ("avg_pool_3x3", 2)]],
                    "path": [4, 8, 8], "filter_multiplier": 2, "stem_channels": 4, "aspp_channels": 4},
}



def test_registry_names_every_model_and_loads_its_constructor():
    assert set(MODELS) == set(SMALL_OPTIONS)
    assert all(callable(MODELS.get(name)) for name in MODELS)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'segformer'") as error:
        build_model("segformer")
    for name in MODELS:
        assert name in str(error.value)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        build_model("unet", num_classes=0)


@pytest.mark.parametrize(
    ("name", "option", "listed"),
    [
        ("unet", "dropout", "base_channels"),
        ("deeplabv3", "encoder_name", "output_stride"),
        ("fcn", "depth", "aux"),
    ],
)
def test_unknown_option_names_the_option_and_the_model(name, option, listed):
    with pytest.raises(RegistryError, match=f"model '{name}' has no option '{option}'") as error:
        build_model(name, **{option: 1})
    assert listed in str(error.value)
    assert listed in model_options(name)


@pytest.mark.parametrize("name", sorted(SMALL_OPTIONS))
def test_every_model_follows_the_output_and_naming_conventions(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **SMALL_OPTIONS[name])
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 5, 37, 45) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert isinstance(model.output_stride, int) and model.output_stride in (8, 16, 32)

    # last_layer_prefixes select exactly the weight and bias of the final logits conv.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    selected = {n: p for n, p in model.named_parameters() if n.startswith(model.last_layer_prefixes)}
    assert len(selected) == 2
    assert all(a is b for a, b in zip(selected.values(), [convs[-1].weight, convs[-1].bias], strict=True))
    assert convs[-1].out_channels == 5

    # Feature extractors that can start from pretrained weights live under backbone. or encoder.
    tops = {n.split(".")[0] for n, _ in model.named_parameters()}
    if name in ("deeplabv3", "fcn"):
        assert "backbone" in tops
    elif name not in ("unet", "encdec", "autodeeplab"):  # these have no pretrained feature extractor
        assert "encoder" in tops


def test_count_parameters():
    model = build_model("unet", num_classes=2, base_channels=4, depth=2)
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    for p in model.stem.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.stem.parameters())
    assert count_parameters(model, trainable_only=True) == total - frozen
    # Buffers (batch-norm running statistics) are not parameters.
    assert sum(b.numel() for b in model.buffers()) > 0


@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch):
    """Point torch's and Hugging Face's caches at an empty folder: nothing pretrained is available."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "options", "in_message"),
    [
        ("deeplabv3", {"pretrained_backbone": True}, ["resnet50-0676ba61.pth", "pretrained_backbone=False"]),
        ("deeplabv3", {"backbone": "resnet18", "pretrained_backbone": True}, ["resnet18-f37072fd.pth"]),
        ("deeplabv3", {"pretrained": True}, ["deeplabv3_resnet50_coco", "pretrained=False"]),
        ("fcn", {"pretrained_backbone": True}, ["resnet50-0676ba61.pth", "pretrained_backbone=False"]),
        ("fcn", {"pretrained": True}, ["fcn_resnet50_coco", "pretrained=False"]),
        ("fpn", {"encoder_name": "resnet18", "encoder_weights": "imagenet"},
         ["'imagenet'", "'resnet18'", "smp-hub/resnet18.imagenet", "encoder_weights=None"]),
        ("linknet", {"encoder_name": "tu-resnet18", "encoder_weights": "imagenet"},
         ["'tu-resnet18'", "encoder_weights=None"]),
    ],
)
def test_pretrained_weights_offline_fail_with_a_clear_message(empty_weight_caches, name, options, in_message):
    with pytest.raises(PretrainedWeightsUnavailable) as error:
        build_model(name, **options)
    message = str(error.value)
    assert "cannot connect to" in message and "To proceed" in message
    for fragment in in_message:
        assert fragment in message


def test_cached_torchvision_weights_load_without_network(empty_weight_caches):
    """A file already in torch's cache is used as is (the network stays blocked)."""
    torch.manual_seed(0)
    imagenet_like = torchvision.models.resnet18().state_dict()
    checkpoints = empty_weight_caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(imagenet_like, checkpoints / "resnet18-f37072fd.pth")

    model = build_model("deeplabv3", num_classes=3, backbone="resnet18", pretrained_backbone=True)
    backbone = model.backbone.state_dict()
    assert set(backbone) == {k for k in imagenet_like if not k.startswith("fc.")}
    for key, tensor in backbone.items():
        torch.testing.assert_close(tensor, imagenet_like[key], rtol=0, atol=0)


def test_downloaded_weights_are_loaded_where_they_belong(monkeypatch):
    """The loading plumbing, with the download replaced by torchvision state dicts made here."""
    torch.manual_seed(0)
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    coco_like = reference.state_dict()
    monkeypatch.setattr(segkit.models.deeplabv3, "torchvision_weights_state_dict", lambda *a, **k: coco_like)
    model = build_model("deeplabv3", pretrained=True)  # aux=False: torchvision's aux entries are dropped
    torch.testing.assert_close(model.classifier.weight, coco_like["classifier.4.weight"], rtol=0, atol=0)
    conv3 = coco_like["backbone.layer4.2.conv3.weight"]
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight, conv3, rtol=0, atol=0)

    imagenet_like = torchvision.models.resnet50().state_dict()
    monkeypatch.setattr(segkit.models.fcn, "torchvision_weights_state_dict", lambda *a, **k: imagenet_like)
    fcn = build_model("fcn", num_classes=4, pretrained_backbone=True)
    torch.testing.assert_close(fcn.backbone.conv1.weight, imagenet_like["conv1.weight"], rtol=0, atol=0)
    assert fcn.classifier[4].out_channels == 4
