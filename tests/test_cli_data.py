"""`segkit data shapes` and `segkit data stats`, in-process through main() and once as a real process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segkit.cli import main
from segkit.data import VOC_CLASSES


def train_counts(root):
    """Per-value pixel counts of the train masks, read with Pillow only (the independent reference)."""
    voc = root / "VOCdevkit" / "VOC2012"
    ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    masks = [np.asarray(Image.open(voc / "SegmentationClass" / f"{i}.png")) for i in ids]
    return np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256), len(ids)


def test_shapes_then_stats_in_process(tmp_path, capsys):
    out = tmp_path / "shapes"
    args = ["data", "shapes", "--out", str(out), "--seed", "2", "--size", "64",
            "--n-train", "6", "--n-val", "3", "--n-test", "2"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "6/3/2" in printed
    assert (out / "shapes.json").is_file() and not (out / "test-labels").exists()
    voc = out / "VOCdevkit" / "VOC2012"
    assert (voc / "ImageSets/Segmentation/test.txt").read_text().split() == ["test_0000", "test_0001"]
    assert not list((voc / "SegmentationClass").glob("test_*"))  # test images, and no test mask anywhere
    assert sorted(p.name for p in out.rglob("test_*")) == ["test_0000.jpg", "test_0001.jpg"]

    assert main([*args, "--if-missing"]) == 0
    assert "already complete" in capsys.readouterr().out

    assert main(["data", "stats", str(out), "--split", "train"]) == 0
    table = capsys.readouterr().out
    counts, n_images = train_counts(out)
    labelled = counts[:21].sum()
    assert f"{n_images} images" in table and "split 'train'" in table
    for index in np.flatnonzero(counts[:21]):
        row = next(line for line in table.splitlines() if f" {VOC_CLASSES[index]} " in line)
        assert row.split()[2] == f"{counts[index]:,}"
        assert row.split()[3] == f"{100 * counts[index] / labelled:.2f}"
    assert f"{counts[255]:,}" in next(line for line in table.splitlines() if line.startswith("255 void"))
    assert "64x64: 6" in table


def test_stats_errors_are_one_line_messages(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("segkit: error:") and "host.robots.ox.ac.uk" in error


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "shapes", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--if-missing" in help_text and "examples:" in help_text and "segkit data stats" in help_text
    assert main([]) == 2  # no command: prints the overview


def test_python_dash_m_segkit_runs_as_a_process(tmp_path):
    """One real process (importing torch is slow on a busy CPU, so only one)."""
    out = tmp_path / "shapes"
    run = subprocess.run(
        [sys.executable, "-m", "segkit", "data", "shapes", "--out", str(out), "--size", "48",
         "--n-train", "3", "--n-val", "1", "--n-test", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "wrote the shapes dataset" in run.stdout
    counts, n_images = train_counts(out)
    assert n_images == 3 and counts.sum() == 3 * 48 * 48


def test_stats_of_a_folder_layout(tmp_path, capsys):
    from segkit.data import write_mask

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.new("RGB", (3, 2)).save(tmp_path / "images/one.png")
    write_mask(tmp_path / "masks/one.png", np.array([[0, 0, 15], [15, 15, 255]]))
    assert main(["data", "stats", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    person = next(line for line in table.splitlines() if " person " in line)
    assert person.split()[2:] == ["3", "60.00", "1", "100.0"]  # 3 of the 5 labelled pixels, in 1 image
    assert "FolderDataset" in table and "3x2: 1" in table
