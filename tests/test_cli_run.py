"""`segkit train / evaluate / predict` end to end on a tiny shapes set, checked against references built
by hand: the UNet rebuilt directly from its class, torchmetrics' confusion matrix, the competition's
submission checker and segkit.data.read_mask."""

from __future__ import annotations

import json
import shutil
import zipfile
from io import BytesIO

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchmetrics.classification import MulticlassConfusionMatrix

from segkit.cli import main
from segkit.competition.rules import Rules, default_size_limits
from segkit.competition.submission import check_submission
from segkit.config import load_config
from segkit.data import VOC_CLASSES, VOCSegmentation, eval_transforms, make_shapes, read_mask
from segkit.models import UNet

TINY = ["data.crop_size=32", "data.base_size=32", "data.batch_size=4", "data.eval_batch_size=2",
        "model.options.base_channels=4", "model.options.depth=2", "train.epochs=2", "train.device=cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny dataset and a 2-epoch run of the shipped demo config on it, through `segkit train`."""
    base = tmp_path_factory.mktemp("cli")
    root = make_shapes(base / "shapes", size=32, n_train=8, n_val=4, n_test=3)
    overrides = [f"data.root={root}", f"run.dir={base / 'runs'}", "run.name=tiny", *TINY]
    assert main(["train", "shapes_unet", "--set", *overrides]) == 0
    return {"root": root, "run_dir": base / "runs" / "tiny", "overrides": overrides}


def reference_model(run) -> torch.nn.Module:
    """The trained network rebuilt without segkit.build: the UNet class and the checkpoint's weights."""
    state = torch.load(run["run_dir"] / "last.pt", weights_only=True)
    model = UNet(num_classes=21, base_channels=4, depth=2)
    model.load_state_dict(state["model"])
    return model.eval()


def test_train_writes_the_resolved_config_and_checkpoints(run):
    run_dir = run["run_dir"]
    assert {"config.yaml", "last.pt", "best.pt", "metrics.csv"} <= {p.name for p in run_dir.iterdir()}
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    expected = load_config("shapes_unet", run["overrides"])
    expected["data"]["classes"] = list(VOC_CLASSES)  # filled in from the dataset
    assert saved == expected
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert checkpoint["config"] == expected and checkpoint["epoch"] == 2


def test_a_second_train_refuses_without_resume_and_continues_with_it(run, capsys):
    assert main(["train", "shapes_unet", "--set", *run["overrides"]]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    before = torch.load(run["run_dir"] / "last.pt", weights_only=True)["model"]
    assert main(["train", "shapes_unet", "--resume", "--set", *run["overrides"]]) == 0  # already finished
    after = torch.load(run["run_dir"] / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resuming_with_a_changed_config_says_what_changed(run, tmp_path, capsys):
    shutil.copytree(run["run_dir"], tmp_path / "tiny")
    overrides = [*run["overrides"], f"run.dir={tmp_path}", "train.epochs=3"]
    assert main(["train", "shapes_unet", "--resume", "--set", *overrides]) == 0
    out = capsys.readouterr().out
    assert "warning: resuming with a config that differs from" in out
    assert f"run.dir ({str(run['run_dir'].parent)!r} -> {str(tmp_path)!r})" in out
    assert "train.epochs (2 -> 3)" in out
    assert torch.load(tmp_path / "tiny" / "last.pt", weights_only=True)["epoch"] == 3


def torchmetrics_iou(model, root, flip=False) -> np.ndarray:
    dataset = VOCSegmentation(root, "val", eval_transforms())
    matrix = MulticlassConfusionMatrix(num_classes=21, ignore_index=255)
    with torch.no_grad():
        for image, mask in dataset:
            image = image.as_subclass(torch.Tensor)[None]
            probs = model(image).softmax(1)
            if flip:
                probs = (probs + model(image.flip(-1)).softmax(1).flip(-1)) / 2
            matrix.update(probs.argmax(1), mask.as_subclass(torch.Tensor)[None])
    m = matrix.compute().double()
    union = m.sum(0) + m.sum(1) - m.diag()
    return (m.diag() / union).numpy()  # NaN where a class is in neither truth nor prediction


@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_prints_the_table_and_writes_json_matching_torchmetrics(run, capsys, flip):
    checkpoint = run["run_dir"] / "last.pt"
    argv = ["evaluate", str(checkpoint)] + (["--flip"] if flip else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "background" in out and "mIoU" in out
    report = json.loads(checkpoint.with_name("last-val-tta.json" if flip else "last-val.json").read_text())
    expected = torchmetrics_iou(reference_model(run), run["root"], flip=flip)
    got = np.array([np.nan if v is None else v for v in report["iou"]])
    np.testing.assert_allclose(got, expected, equal_nan=True)
    assert report["miou"] == pytest.approx(np.nanmean(expected))
    assert report["num_images"] == 4 and report["split"] == "val" and report["classes"] == list(VOC_CLASSES)
    assert report["inference"]["flip"] is flip


def test_evaluate_out_option_and_sliding_window(run, tmp_path):
    out = tmp_path / "results" / "val.json"
    assert main(["evaluate", str(run["run_dir"] / "best.pt"), "--sliding-window", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["inference"]["window"] == 32  # the training crop size
    assert report["checkpoint"].endswith("best.pt")


def test_predict_writes_a_valid_submission(run, tmp_path):
    out = tmp_path / "submission.zip"
    assert main(["predict", str(run["run_dir"] / "last.pt"), "--split", "test", "--out", str(out)]) == 0

    test_set = VOCSegmentation(run["root"], "test", eval_transforms(), masks="optional")
    assert not test_set.has_masks  # the test masks are held back: prediction must not need them
    with zipfile.ZipFile(out) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{i}.png" for i in test_set.ids)  # flat, <image_id>.png
        modes = {Image.open(BytesIO(archive.read(n))).mode for n in names}
    assert modes == {"P"}

    sizes = {image_id: (32, 32) for image_id in test_set.ids}
    rules = Rules(num_classes=21, class_names=VOC_CLASSES, **default_size_limits(list(sizes.values())))
    received = {}
    report = check_submission(out, sizes, rules, lambda image_id, mask: received.__setitem__(image_id, mask))
    assert report.ok, report.problems

    model = reference_model(run)
    for index, image_id in enumerate(test_set.ids):
        image = test_set[index][0].as_subclass(torch.Tensor)[None]
        with torch.no_grad():
            expected = model(image).argmax(1)[0].numpy()
        np.testing.assert_array_equal(received[image_id], expected)
    with zipfile.ZipFile(out) as archive:  # and read back through segkit's own mask reader
        (tmp_path / "one.png").write_bytes(archive.read(names[0]))
    np.testing.assert_array_equal(read_mask(tmp_path / "one.png"), received[names[0][:-4]])


def test_print_config_shows_the_resolved_config(run, capsys):
    assert main(["train", "shapes_unet", "--print-config", "--set", *run["overrides"]]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == load_config("shapes_unet", run["overrides"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "no/such/best.pt"], "checkpoint no/such/best.pt does not exist"),
        (["predict", "no/such/last.pt"], "checkpoint no/such/last.pt does not exist"),
        (["train", "shapes_unet", "--set", "optimizer.lr=-0.1"],
         "optimizer.lr: expected a number > 0, got -0.1"),
        (["train", "shapes_unet", "--set", "train.epoch=3"],
         "train.epoch: unknown key (did you mean 'train.epochs'?)"),
        (["train", "no_such_config"], "config 'no_such_config' is neither a file nor a shipped config"),
        (["train", "shapes_unet", "--set", "model.options.depht=2"],
         "model.options: model 'unet' has no option"),
    ],
)
def test_errors_name_the_path_or_the_key(argv, message, capsys, run):
    if argv[0] == "train" and "model.options.depht=2" in argv:
        argv = argv[:3] + run["overrides"] + argv[3:]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_damaged_checkpoint_is_reported(tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(bad)]) == 2
    assert f"cannot load checkpoint {bad}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"segkit {command} " in text


def test_predict_on_a_labelled_split_never_opens_a_mask(run, tmp_path, opened):
    """`segkit predict --split val` reads the images only: the val masks on disk are never opened."""
    out = tmp_path / "val.zip"
    assert main(["predict", str(run["run_dir"] / "last.pt"), "--split", "val", "--out", str(out)]) == 0
    assert_images_read_masks_not(VOCSegmentation(run["root"], "val"), opened)


def assert_images_read_masks_not(dataset, opened: list) -> None:
    """Every image file of `dataset` was opened, none of its mask files."""
    mask_paths = {dataset.mask_path(i) for i in range(len(dataset))}
    image_paths = {dataset.image_path(i) for i in range(len(dataset))}
    assert not mask_paths & set(opened), "a mask file was opened for a prediction"
    assert image_paths <= set(opened)  # the counter does see the files that are read


# ------------------------------------------------------------------- predict never needs (or reads) masks


def checkpoint_with(run, path, **data_keys):
    """A copy of the run's last.pt whose stored config has `data_keys` changed (a checkpoint is a dict)."""
    state = torch.load(run["run_dir"] / "last.pt", weights_only=True)
    state["config"]["data"].update(data_keys)
    torch.save(state, path)
    return path


def predicted_masks(zip_path) -> dict[str, np.ndarray]:
    """image id -> the class indices of its palette PNG in the zip, read with Pillow."""
    with zipfile.ZipFile(zip_path) as archive:
        return {name[:-4]: np.array(Image.open(BytesIO(archive.read(name)))) for name in archive.namelist()}


def model_predictions(run, images) -> dict[str, np.ndarray]:
    """The reference: the rebuilt UNet's argmax on each (image id, normalised image (3, H, W))."""
    model = reference_model(run)
    with torch.no_grad():
        return {image_id: model(image.as_subclass(torch.Tensor)[None]).argmax(1)[0].numpy()
                for image_id, image in images}  # fmt: skip


def assert_same_masks(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for image_id, mask in expected.items():
        np.testing.assert_array_equal(got[image_id], mask)


def val_images(run):
    val_set = VOCSegmentation(run["root"], "val", eval_transforms())
    return [(image_id, val_set[i][0]) for i, image_id in enumerate(val_set.ids)]


def test_predict_a_split_with_a_mask_missing(run, tmp_path, capsys):
    """One val mask deleted: evaluate refuses the split, predict (which reads no mask) predicts it."""
    root = shutil.copytree(run["root"], tmp_path / "shapes")
    val_set = VOCSegmentation(root, "val")
    val_set.mask_path(1).unlink()
    checkpoint = checkpoint_with(run, tmp_path / "copy.pt", root=str(root))
    assert main(["evaluate", str(checkpoint)]) == 2
    assert "1 of 4 mask file(s) missing" in capsys.readouterr().err
    out = tmp_path / "val.zip"
    assert main(["predict", str(checkpoint), "--split", "val", "--out", str(out)]) == 0
    assert_same_masks(predicted_masks(out), model_predictions(run, val_images(run)))


def test_predict_ignores_data_cache_and_opens_no_mask(run, tmp_path, opened):
    """data.cache: true in the checkpoint's config: predict builds no cache, so no val mask is decoded,
    and writes the masks of the run without a cache (and of the model itself)."""
    cache_dir = tmp_path / "cache"
    checkpoint = checkpoint_with(run, tmp_path / "cached.pt", cache=True, cache_dir=str(cache_dir))
    out = tmp_path / "cached.zip"
    assert main(["predict", str(checkpoint), "--split", "val", "--out", str(out)]) == 0
    assert_images_read_masks_not(VOCSegmentation(run["root"], "val"), opened)
    assert not cache_dir.exists()

    uncached = tmp_path / "uncached.zip"
    assert main(["predict", str(run["run_dir"] / "last.pt"), "--split", "val", "--out", str(uncached)]) == 0
    assert_same_masks(predicted_masks(out), predicted_masks(uncached))
    assert_same_masks(predicted_masks(out), model_predictions(run, val_images(run)))


def folder_copy_of_the_shapes_set(shapes_root, folder, layout):
    """The shapes set's train and val splits with masks, and its test split without, as a folder dataset
    in `layout`; the files are copied as they are (same bytes, same pixels)."""
    for split in ("train", "val", "test"):
        dataset = VOCSegmentation(shapes_root, split, masks="required" if split != "test" else "optional")
        if layout == "images+masks":
            image_dir, mask_dir = folder / split / "images", folder / split / "masks"
        else:
            image_dir, mask_dir = folder / "data" / split, folder / "labels" / split
        image_dir.mkdir(parents=True)
        for index, image_id in enumerate(dataset.ids):
            shutil.copy(dataset.image_path(index), image_dir / f"{image_id}.jpg")
            if dataset.has_masks:
                mask_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(dataset.mask_path(index), mask_dir / f"{image_id}.png")


@pytest.mark.parametrize("layout", ["images+masks", "data+labels"])
def test_predict_an_unlabelled_split_of_a_folder_dataset(run, tmp_path, layout):
    """A folder dataset whose test split has images only: segkit predict writes the model's masks."""
    folder = tmp_path / "mine"
    folder_copy_of_the_shapes_set(run["root"], folder, layout)
    assert not (folder / "test" / "masks").exists() and not (folder / "labels" / "test").exists()
    checkpoint = checkpoint_with(run, tmp_path / "folder.pt", dataset="folder", root=str(folder))
    out = tmp_path / "test.zip"
    assert main(["predict", str(checkpoint), "--split", "test", "--out", str(out)]) == 0

    test_set = VOCSegmentation(run["root"], "test", eval_transforms(), masks="optional")
    expected = model_predictions(run, [(image_id, test_set[i][0]) for i, image_id in enumerate(test_set.ids)])
    assert_same_masks(predicted_masks(out), expected)
