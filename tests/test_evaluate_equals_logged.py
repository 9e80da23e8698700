"""One evaluation function: the validation metrics a training run logs for its last epoch are exactly what
`segkit evaluate <run>/last.pt --split val` reports for the checkpoint it saved (same function, same loss,
same void label, same precision), on the shapes set with a BatchNorm UNet."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from segkit.cli import main
from segkit.data import make_shapes
from segkit.trainer.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("logged")
    root = make_shapes(base / "shapes", size=32, n_train=8, n_val=5, n_test=2)
    overrides = [f"data.root={root}", f"run.dir={base / 'runs'}", "run.name=tiny", "data.crop_size=32",
                 "data.base_size=32", "data.batch_size=4", "data.eval_batch_size=2",
                 "model.options.base_channels=4", "model.options.depth=2", "train.epochs=2",
                 "train.device=cpu", "train.print_table=false", "train.progress_bar=false"]
    torch.set_num_threads(1)
    assert main(["train", "shapes_unet", "--set", *overrides]) == 0
    return base / "runs" / "tiny"


def test_last_logged_val_metrics_equal_segkit_evaluate_of_last_pt(trained, tmp_path, capsys):
    with open(trained / "metrics.csv", newline="") as f:
        logged = list(csv.DictReader(f))[-1]
    assert logged["epoch"] == "2"
    capsys.readouterr()
    out_json = tmp_path / "last-val.json"
    assert main(["evaluate", str(trained / "last.pt"), "--split", "val", "--out", str(out_json)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert report["miou"] == pytest.approx(float(logged["miou"]), abs=1e-6)
    assert report["pixel_accuracy"] == pytest.approx(float(logged["pixel_accuracy"]), abs=1e-6)
    assert report["loss"] == pytest.approx(float(logged["val_loss"]), abs=1e-6)
    assert f"mIoU {float(logged['miou']):.4f}" in printed
    # The checkpoint holds the same numbers as the log (written from the same evaluation).
    saved = torch.load(trained / "last.pt", weights_only=True)["val_metrics"]
    assert saved["miou"] == pytest.approx(report["miou"], abs=1e-12)


def test_the_comparison_is_sharp(trained, tmp_path):
    """Other weights give another mIoU, so the equality above does not hold by construction."""
    state = torch.load(trained / "last.pt", weights_only=True)
    state["model"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, tmp_path / "changed.pt")  # a new checksum: torch.save alone would be refused
    out_json = tmp_path / "changed.json"
    assert main(["evaluate", str(tmp_path / "changed.pt"), "--split", "val", "--out", str(out_json)]) == 0
    with open(trained / "metrics.csv", newline="") as f:
        logged = list(csv.DictReader(f))[-1]
    assert json.loads(out_json.read_text())["loss"] != pytest.approx(float(logged["val_loss"]), abs=1e-6)
