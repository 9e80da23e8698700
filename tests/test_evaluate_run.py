"""`segkit evaluate RUN_FOLDER`: the run's best.pt with the config stored in it. Checked against
`segkit evaluate RUN_FOLDER/best.pt` and against a bincount confusion matrix of a UNet rebuilt by hand
from best.pt's weights on the val split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from segkit.cli import main
from segkit.data import VOCSegmentation, eval_transforms, make_shapes
from segkit.models import UNet

TINY = ["data.crop_size=32", "data.base_size=32", "data.batch_size=4", "data.eval_batch_size=2",
        "model.options.base_channels=4", "model.options.depth=2", "train.epochs=2", "train.device=cpu",
        "train.print_table=false"]



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch `segkit train` run on a tiny shapes set, whose last.pt then gets other weights than
    best.pt (so that evaluating the wrong file cannot pass)."""
    base = tmp_path_factory.mktemp("evaluate_run")
    root = make_shapes(base / "shapes", size=32, n_train=8, n_val=4, n_test=3)
    overrides = [f"data.root={root}", f"run.dir={base / 'runs'}", "run.name=tiny", *TINY]
    torch.set_num_threads(1)
    assert main(["train", "shapes_unet", "--set", *overrides]) == 0
    run_dir = base / "runs" / "tiny"
    last = torch.load(run_dir / "last.pt", weights_only=True)
    last["model"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in last["model"].items()}
    torch.save(last, run_dir / "last.pt")
    return {"root": root, "run_dir": run_dir, "overrides": overrides, "base": base}


def bincount_metrics(checkpoint, root) -> dict:
    """IoU per class, mIoU and pixel accuracy of the checkpoint's UNet on the val split, by hand."""
    model = UNet(num_classes=21, base_channels=4, depth=2)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    matrix = torch.zeros(21 * 21, dtype=torch.int64)
    with torch.no_grad():
        for image, mask in VOCSegmentation(root, "val", eval_transforms()):
            pred = model(image.as_subclass(torch.Tensor)[None])[0].argmax(0)
            mask = mask.as_subclass(torch.Tensor)
            valid = mask != 255
            matrix += torch.bincount(21 * mask[valid] + pred[valid], minlength=21 * 21)
    m = matrix.reshape(21, 21).double().numpy()
    union = m.sum(0) + m.sum(1) - np.diag(m)
    with np.errstate(invalid="ignore"):
        iou = np.diag(m) / union  # NaN for a class in neither truth nor prediction
    return {"iou": iou, "miou": np.nanmean(iou), "pixel_accuracy": np.diag(m).sum() / m.sum()}


def test_evaluate_run_folder_equals_best_pt_and_a_bincount_reference(run, tmp_path, capsys):
    run_dir = run["run_dir"]
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"using its best checkpoint {run_dir / 'best.pt'}" in out and "mIoU" in out and "background" in out
    from_folder = json.loads((run_dir / "best-val.json").read_text())

    direct_json = tmp_path / "direct.json"
    assert main(["evaluate", str(run_dir / "best.pt"), "--out", str(direct_json)]) == 0
    direct = json.loads(direct_json.read_text())
    assert from_folder == direct  # the same checkpoint, split, inference and every metric
    assert from_folder["checkpoint"] == str(run_dir / "best.pt") and from_folder["split"] == "val"

    expected = bincount_metrics(run_dir / "best.pt", run["root"])
    got = np.array([np.nan if v is None else v for v in from_folder["iou"]])
    np.testing.assert_allclose(got, expected["iou"], rtol=1e-12, equal_nan=True)
    assert from_folder["miou"] == pytest.approx(expected["miou"], rel=1e-12)
    assert from_folder["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], rel=1e-12)
    # sharpness: last.pt (other weights) gives other metrics
    assert bincount_metrics(run_dir / "last.pt", run["root"])["pixel_accuracy"] != expected["pixel_accuracy"]


def test_evaluate_a_folder_without_best_pt_names_what_it_has(tmp_path, run, capsys):
    folder = tmp_path / "no_best"
    folder.mkdir()
    shutil.copy(run["run_dir"] / "last.pt", folder / "last.pt")
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"run folder {folder} has no best.pt" in err
    assert "give one of its checkpoints instead: last.pt" in err


def test_restart_from_the_cli_then_evaluate_and_predict_the_archived_run(run, tmp_path, capsys):
    """`--resume restart` moves the run to archive/<date-time>/, which is still a run folder."""
    shutil.copytree(run["run_dir"], tmp_path / "tiny")
    overrides = [*run["overrides"], f"run.dir={tmp_path}"]
    assert main(["train", "shapes_unet", "--resume", "restart", "--set", *overrides]) == 0
    (archived,) = (tmp_path / "tiny" / "archive").iterdir()
    for name in ("best.pt", "last.pt", "metrics.csv", "config.yaml", "best-val.json"):
        assert (archived / name).read_bytes() == (run["run_dir"] / name).read_bytes(), name
    assert "restarting" in capsys.readouterr().out
    assert main(["evaluate", str(archived), "--out", str(tmp_path / "archived.json")]) == 0
    report = json.loads((tmp_path / "archived.json").read_text())
    original = json.loads((run["run_dir"] / "best-val.json").read_text())
    assert report["iou"] == original["iou"] and report["miou"] == original["miou"]
    zip_path = tmp_path / "test.zip"
    assert main(["predict", str(archived), "--out", str(zip_path)]) == 0 and zip_path.is_file()
