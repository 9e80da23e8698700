"""The config key data.cache: segkit.build.build_dataset wraps its dataset in segkit.data.CachedDataset.

The reference everywhere is the same config with data.cache false (the dataset read and transformed from
the files, as before the key existed): cached samples, training steps, evaluations and predictions must be
equal to it, bit for bit. Every file a dataset decodes goes through PIL.Image.open; `opened` counts calls.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torchvision.transforms import v2

from segkit import paths
from segkit.build import build_dataset, build_trainer
from segkit.cli import main
from segkit.config import ConfigError, load_config, validate_config
from segkit.data import CachedDataset, VOCSegmentation, make_shapes

TINY = ["data.crop_size=24", "data.base_size=32", "data.batch_size=2", "data.eval_batch_size=2",
        "model.options.base_channels=4", "model.options.depth=2", "train.device=cpu"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A tiny shapes set (VOC layout, 32 x 32): 5 train, 3 val, 2 test images (test masks held back)."""
    return make_shapes(tmp_path_factory.mktemp("shapes") / "shapes", seed=0, size=32, n_train=5, n_val=3,
                       n_test=2)


@pytest.fixture(autouse=True)
def env_cache(tmp_path, monkeypatch):
    """$SEGKIT_CACHE in a temporary folder, so that no test writes into the repository's data/cache."""
    folder = tmp_path / "env-cache"
    monkeypatch.setenv("SEGKIT_CACHE", str(folder))
    return folder



def config_for(root, *overrides):
    return load_config("shapes_unet", [f"data.root={root}", *TINY, *overrides])


def assert_same_samples(got, expected) -> None:
    """Every item of `got` equals the one of `expected`: same tensor types and dtypes, torch.equal values."""
    assert len(got) == len(expected)
    for index in range(len(expected)):
        (image, mask), (ref_image, ref_mask) = got[index], expected[index]
        assert type(image) is type(ref_image) and image.dtype == ref_image.dtype == torch.float32
        assert torch.equal(image, ref_image), f"image {index}"
        if ref_mask is None:
            assert mask is None
        else:
            assert type(mask) is type(ref_mask) and mask.dtype == ref_mask.dtype == torch.int64
            assert torch.equal(mask, ref_mask), f"mask {index}"


def items_under_seed(dataset, seed: int) -> list:
    torch.manual_seed(seed)
    return [dataset[i] for i in range(len(dataset))]


# ------------------------------------------------------------------------------------------ samples


@pytest.mark.parametrize("split, masks", [("val", "required"), ("test", "optional")])
def test_cached_evaluation_samples_equal_uncached_ones(root, split, masks):
    uncached = build_dataset(config_for(root), split, masks=masks)
    cached = build_dataset(config_for(root, "data.cache=true"), split, masks=masks)
    assert isinstance(uncached, VOCSegmentation) and isinstance(cached, CachedDataset)
    assert [type(step) for step in cached.stored_steps] == [v2.ToDtype, v2.Normalize]
    assert cached.live_steps == []
    assert cached.has_masks is uncached.has_masks is (split == "val")  # the test split's masks are held back
    assert cached.ids == uncached.ids and cached.classes == uncached.classes
    assert_same_samples(cached, uncached)
    for index in range(len(cached)):  # the image alone, as `segkit predict` reads it (masks="none")
        assert torch.equal(cached.image(index), uncached.image(index))


def test_cached_training_samples_equal_uncached_ones_under_the_same_seed(root):
    uncached = build_dataset(config_for(root), "train", train=True)
    cached = build_dataset(config_for(root, "data.cache=true"), "train", train=True)
    assert cached.stored_steps == []  # the chain starts with a random scale: only decoded files are stored
    for seed in (0, 1):
        assert_same_samples(items_under_seed(cached, seed), items_under_seed(uncached, seed))
    # The augmentation still runs per access: another seed gives other samples (nothing random is stored).
    seed_0, seed_1 = items_under_seed(cached, 0), items_under_seed(cached, 1)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(seed_0, seed_1, strict=True))


@pytest.mark.parametrize("split, train", [("train", True), ("val", False)])
def test_a_second_build_reuses_the_cache_and_decodes_nothing(root, opened, split, train):
    config = config_for(root, "data.cache=true")
    first = build_dataset(config, split, train=train)
    assert first.built and len(opened) == 2 * len(first)  # each image and mask decoded once
    torch.manual_seed(0)
    reference = [first[i] for i in range(len(first))]
    opened.clear()

    second = build_dataset(config, split, train=train)
    torch.manual_seed(0)
    items = [second[i] for i in range(len(second))]
    assert not second.built and second.folder == first.folder
    assert opened == []  # neither building nor reading decoded a file
    assert_same_samples(items, reference)


# ------------------------------------------------------------------------------------------- where


def test_the_cache_goes_under_segkit_cache_when_set(root, env_cache):
    dataset = build_dataset(config_for(root, "data.cache=true"), "val")
    assert dataset.folder.parent == env_cache / "datasets"
    assert (dataset.folder / "index.json").is_file() and (dataset.folder / "image.bin").is_file()


def test_data_cache_dir_wins_over_segkit_cache(root, env_cache, tmp_path):
    explicit = tmp_path / "explicit"
    dataset = build_dataset(config_for(root, "data.cache=true", f"data.cache_dir={explicit}"), "val")
    assert dataset.folder.parent == explicit / "datasets" and (dataset.folder / "index.json").is_file()
    assert not env_cache.exists()


def test_without_either_the_cache_goes_to_data_cache_in_the_repository(root, tmp_path, monkeypatch):
    monkeypatch.delenv("SEGKIT_CACHE")
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path / "repo")  # stands in for the checkout
    dataset = build_dataset(config_for(root, "data.cache=true"), "val")
    assert dataset.folder.parent == tmp_path / "repo" / "data" / "cache" / "datasets"


def test_cache_false_is_the_default_and_writes_nothing(root, env_cache, opened):
    config = config_for(root)
    assert config["data"]["cache"] is False and config["data"]["cache_dir"] is None
    dataset = build_dataset(config, "val")
    assert isinstance(dataset, VOCSegmentation) and opened == []  # files are decoded when read, not before
    assert not env_cache.exists()


# ---------------------------------------------------------------------------------------- training


def trained_one_step(root, run_dir, *overrides):
    config = config_for(root, f"run.dir={run_dir}", "run.name=tiny", "train.epochs=1",
                        "train.limit_batches=1", "train.progress_bar=false", *overrides)
    trainer = build_trainer(config)
    trainer.fit()
    return trainer


def test_build_trainer_with_the_cache_trains_as_without(root, tmp_path):
    plain = trained_one_step(root, tmp_path / "plain")
    cached = trained_one_step(root, tmp_path / "cached", "data.cache=true")
    assert cached.step == plain.step == 1
    assert cached.loss == plain.loss and torch.isfinite(torch.tensor(plain.loss))
    assert cached.val_metrics["miou"] == plain.val_metrics["miou"]
    for (name, weight), reference in zip(cached.model.state_dict().items(), plain.model.state_dict().values(),
                                         strict=True):  # fmt: skip
        assert torch.equal(weight, reference), name
    assert len(list((tmp_path / "env-cache" / "datasets").glob("VOCSegmentation-*-*/index.json"))) == 2


def test_segkit_train_evaluate_and_predict_with_the_cache_give_the_results_without(root, tmp_path):
    """The CLI end to end: evaluate takes data.cache from the config stored in the checkpoint; predict
    reads each image once and uses no cache (tests/test_cli_run.py counts its file opens)."""
    results = {}
    for name, cache in (("plain", "false"), ("cached", "true")):
        overrides = [f"data.root={root}", *TINY, "train.epochs=1", "train.limit_batches=2",
                     f"run.dir={tmp_path / 'runs'}", f"run.name={name}", f"data.cache={cache}"]
        assert main(["train", "shapes_unet", "--set", *overrides]) == 0
        checkpoint = tmp_path / "runs" / name / "last.pt"
        assert main(["evaluate", str(checkpoint), "--out", str(tmp_path / f"{name}.json")]) == 0
        assert main(["predict", str(checkpoint), "--out", str(tmp_path / f"{name}.zip")]) == 0
        report = json.loads((tmp_path / f"{name}.json").read_text())
        with zipfile.ZipFile(tmp_path / f"{name}.zip") as archive:
            masks = {member: archive.read(member) for member in sorted(archive.namelist())}
        weights = torch.load(checkpoint, weights_only=True)["model"]
        metrics = {k: report[k] for k in ("iou", "miou", "pixel_accuracy", "num_images")}
        results[name] = metrics, masks, weights
    (report, masks, weights), (ref_report, ref_masks, ref_weights) = results["cached"], results["plain"]
    assert report == ref_report and masks == ref_masks
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[key], ref_weights[key]) for key in ref_weights)  # the same 2 steps
    assert len(results["plain"][1]) == 2  # the two test images
    indexes = (tmp_path / "env-cache").glob("datasets/*/index.json")
    stored = sorted(index.parent.name.split("-")[1] for index in indexes)  # VOCSegmentation-<split>-<hash>
    assert stored == ["train", "val"]  # predict stored no cache of the test split


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"cache": "yes"}, "data.cache: expected true or false, got 'yes' (str)"),
        ({"cache": 1}, "data.cache: expected true or false, got 1 (int)"),
        ({"cache_dir": 5}, "data.cache_dir: expected a string or null, got 5 (int)"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(data, expected):
    with pytest.raises(ConfigError) as info:
        validate_config({"data": data}, source="exp.yaml")
    assert info.value.problems == [expected]


def test_a_quoted_yes_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text('data:\n  cache: "yes"\n')
    with pytest.raises(ConfigError, match=r"exp\.yaml: 1 problem\n  data\.cache: expected true or false"):
        load_config(path)
