"""segkit.paths: explicit argument > environment variable > default, for data, cache, runs and pretrained
weights; `segkit paths`; pretrained weights found under $SEGKIT_PRETRAINED with the network blocked."""

from __future__ import annotations

import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
import torchvision
from huggingface_hub import try_to_load_from_cache
from segmentation_models_pytorch.encoders import encoders

from segkit import paths
from segkit.cli import main
from segkit.models import build_model
from segkit.models.pretrained import (
    check_smp_encoder_weights,
    hf_cache_at,
    hf_weights_dir,
    torch_weights_dir,
)

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"data": paths.data_root, "cache": paths.cache_root, "runs": paths.runs_root,
         "pretrained": paths.pretrained_root}  # fmt: skip
DEFAULTS = {"data": REPO / "data", "cache": REPO / "data" / "cache", "runs": REPO / "runs",
            "pretrained": None}  # fmt: skip
ENV = {"data": "SEGKIT_DATA", "cache": "SEGKIT_CACHE", "runs": "SEGKIT_RUNS",
       "pretrained": "SEGKIT_PRETRAINED"}  # fmt: skip


@pytest.fixture(autouse=True)
def no_segkit_variables(monkeypatch):
    for variable in ENV.values():
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("name", list(ROOTS))
def test_argument_over_environment_over_default(name, monkeypatch, tmp_path):
    root = ROOTS[name]
    assert root() == DEFAULTS[name]
    assert paths.locate(name).source == "default"
    monkeypatch.setenv(ENV[name], "")  # empty = not set
    assert root() == DEFAULTS[name]
    monkeypatch.setenv(ENV[name], str(tmp_path / "env"))
    assert root() == tmp_path / "env"
    assert paths.locate(name).source == f"environment (${ENV[name]})"
    assert root(tmp_path / "arg") == tmp_path / "arg"
    assert root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert paths.locate(name, tmp_path / "arg").source == "argument"
    monkeypatch.setenv(ENV[name], "~/somewhere")
    assert root() == Path.home() / "somewhere"


def test_the_cache_default_is_git_ignored():
    gitignore = (REPO / ".gitignore").read_text().splitlines()
    assert paths.cache_root().relative_to(REPO).parts[0] == "data" and "data/*" in gitignore


def test_pretrained_folders_follow_segkit_pretrained(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_home"))
    # Not set: the libraries' own caches (shared with every other project on the machine).
    assert torch_weights_dir() == Path(torch.hub.get_dir()) / "checkpoints"
    assert torch_weights_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    assert hf_weights_dir() == tmp_path / "hf_home"
    monkeypatch.setenv("SEGKIT_PRETRAINED", str(tmp_path / "weights"))
    assert torch_weights_dir() == tmp_path / "weights" / "torch" / "checkpoints"
    assert hf_weights_dir() == tmp_path / "weights" / "huggingface"
    assert torch_weights_dir(tmp_path / "arg") == tmp_path / "arg" / "torch" / "checkpoints"


def test_torchvision_weights_under_segkit_pretrained_load_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("SEGKIT_PRETRAINED", str(tmp_path / "weights"))
    torch.manual_seed(0)
    imagenet_like = torchvision.models.resnet18().state_dict()
    folder = tmp_path / "weights" / "torch" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(imagenet_like, folder / "resnet18-f37072fd.pth")  # the file name torchvision expects
    model = build_model("deeplabv3", num_classes=3, backbone="resnet18", pretrained_backbone=True)
    for key, tensor in model.backbone.state_dict().items():
        torch.testing.assert_close(tensor, imagenet_like[key], rtol=0, atol=0)


def test_smp_weights_under_segkit_pretrained_are_found_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("SEGKIT_PRETRAINED", str(tmp_path / "weights"))
    settings = encoders["resnet18"]["pretrained_settings"]["imagenet"]
    repo_folder = "models--" + settings["repo_id"].replace("/", "--")
    snapshot = tmp_path / "weights" / "huggingface" / repo_folder / "snapshots" / settings["revision"]
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    check_smp_encoder_weights("resnet18", "imagenet", "fpn")  # no error: cached, the network is not tried
    lookup = (settings["repo_id"], "model.safetensors")
    assert try_to_load_from_cache(*lookup, revision=settings["revision"]) is None  # not in HF's own cache
    with hf_cache_at(hf_weights_dir()):  # where smp's own hf_hub_download then looks
        found = try_to_load_from_cache(*lookup, revision=settings["revision"])
    assert found == str(snapshot / "model.safetensors")
    assert huggingface_hub.constants.HF_HUB_CACHE == str(tmp_path / "empty_hf_home")  # restored


def rows_of(output: str) -> dict[str, list[str]]:
    """`segkit paths` output: first word of each row -> the other columns (split on 2+ spaces)."""
    return {line.split()[0]: re.split(r"\s{2,}", line.strip())[1:] for line in output.splitlines()[1:-1]}


def test_segkit_paths_shows_each_folder_with_its_source(monkeypatch, tmp_path, capsys):
    (tmp_path / "env_cache").mkdir()
    monkeypatch.setenv("SEGKIT_CACHE", str(tmp_path / "env_cache"))
    monkeypatch.setenv("SEGKIT_RUNS", str(tmp_path / "env_runs"))
    assert main(["paths", "--runs", str(tmp_path / "arg_runs"), "--pretrained", str(tmp_path / "w")]) == 0
    rows = rows_of(capsys.readouterr().out)
    assert rows["data"] == [str(REPO / "data"), "default", "yes" if (REPO / "data").is_dir() else "no"]
    assert rows["cache"] == [str(tmp_path / "env_cache"), "environment ($SEGKIT_CACHE)", "yes"]
    assert rows["runs"] == [str(tmp_path / "arg_runs"), "argument", "no"]  # the argument wins over the env
    assert rows["pretrained"] == [str(tmp_path / "w"), "argument", "no"]
    assert rows["torchvision"][0] == str(tmp_path / "w" / "torch" / "checkpoints")
    assert rows["smp"][0] == str(tmp_path / "w" / "huggingface")


def test_segkit_paths_without_pretrained_names_the_libraries_caches(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert main(["paths"]) == 0
    output = capsys.readouterr().out
    rows = rows_of(output)
    assert rows["pretrained"][:2] == ["(not set: the libraries' own caches)", "default"]
    torch_cache = str(tmp_path / "th" / "hub" / "checkpoints")
    assert rows["torchvision"] == [torch_cache, "torch's cache ($TORCH_HOME)", "no"]
    assert "precedence: argument > environment variable > default" in output
