"""`make demo`: the Makefile's own recipe, run twice in an empty folder on a tiny shapes set.

`make -n` expands the recipe (its variables included) into the exact commands `make demo` runs; every one
is a `segkit ...` command, which the test runs through `segkit.cli.main` in this process (a new Python
process per command would spend most of the test importing torch). Only the sizes shrink, through the two
variables the recipe takes: DEMO_DATA (extra `segkit data shapes` options) and DEMO_SET (extra `--set`
overrides). `-o .venv/.synced` tells make not to (re)install the environment.

The demo's claim at full size (val mIoU >= 0.75 within 3 minutes on a 2-core CPU) takes minutes, so
`test_full_demo_reaches_its_claimed_miou` runs the real `make demo` only when SEGKIT_FULL_DEMO=1 is set
(the time is measured by hand with `time make demo`, never asserted in a test).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from segkit.cli import main
from segkit.competition.rules import Rules, default_size_limits
from segkit.competition.submission import check_submission
from segkit.data import VOC_CLASSES, VOCSegmentation
from segkit.paths import repo_root

MAKEFILE = repo_root() / "Makefile"
TINY = ["DEMO_DATA=--size 32 --n-train 8 --n-val 4 --n-test 4",
        "DEMO_SET=data.crop_size=32 data.base_size=32 data.batch_size=4 model.options.base_channels=4 "
        "model.options.depth=2 train.epochs=2"]
MAKE = ["make", "--no-print-directory", "-f", str(MAKEFILE), "-o", ".venv/.synced"]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def demo_commands(folder) -> list[list[str]]:
    """The argument lists of the segkit commands that `make demo` (tiny sizes) runs, in order."""
    dry_run = subprocess.run([*MAKE, "-n", "demo", "RUN=RUN", *TINY], cwd=folder, capture_output=True,
                             text=True, check=True)
    commands = []
    for line in dry_run.stdout.splitlines():
        words = shlex.split(line)
        assert words[:2] == ["RUN", "segkit"], f"a demo step that is not a segkit command: {line}"
        commands.append(words[2:])
    return commands


def run_demo(folder, capsys) -> str:
    for argv in demo_commands(folder):
        assert main(argv) == 0, f"segkit {shlex.join(argv)} failed: {capsys.readouterr().err[-2000:]}"
    return capsys.readouterr().out


def test_make_demo_trains_evaluates_and_writes_a_submission_and_can_run_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGKIT_DATA", raising=False)
    monkeypatch.delenv("SEGKIT_RUNS", raising=False)
    steps = [argv[:2] if argv[0] == "data" else argv[:1] for argv in demo_commands(tmp_path)]
    assert steps == [["data", "shapes"], ["data", "stats"], ["train"], ["evaluate"], ["predict"]]

    first = run_demo(tmp_path, capsys)
    run_dir = tmp_path / "runs" / "demo"
    assert {"config.yaml", "last.pt", "best.pt", "metrics.csv", "last-val.json", "submission.zip"} <= {
        p.name for p in run_dir.iterdir()
    }
    # evaluation: the per-class table is printed, and the JSON holds the same mIoU
    report = json.loads((run_dir / "last-val.json").read_text())
    assert "class                      IoU" in first
    assert f"mIoU {report['miou']:.4f}" in first
    assert report["classes"] == list(VOC_CLASSES) and report["num_images"] == 4

    # the submission is what the competition's checker accepts: one mask per test image
    test_set = VOCSegmentation(tmp_path / "data" / "shapes", "test", masks="optional")
    sizes = {image_id: (32, 32) for image_id in test_set.ids}
    rules = Rules(num_classes=21, class_names=VOC_CLASSES, **default_size_limits(list(sizes.values())))
    seen = []
    checked = check_submission(run_dir / "submission.zip", sizes, rules, lambda i, mask: seen.append(i))
    assert checked.ok, checked.problems
    assert sorted(seen) == sorted(test_set.ids)

    # a second `make demo` neither refuses nor retrains: it resumes the finished run
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    second = run_demo(tmp_path, capsys)
    assert "shapes dataset already complete" in second
    assert "resuming runs/demo from last.pt" in second
    again = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    with zipfile.ZipFile(run_dir / "submission.zip") as archive:
        assert len(archive.namelist()) == 4


@pytest.mark.skipif(os.environ.get("SEGKIT_FULL_DEMO") != "1", reason="minutes long: set SEGKIT_FULL_DEMO=1")
def test_full_demo_reaches_its_claimed_miou(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SEGKIT_DATA", "SEGKIT_RUNS")}
    result = subprocess.run([*MAKE, "demo", f"RUN={sys.executable} -m"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "runs" / "demo" / "last-val.json").read_text())
    assert report["num_images"] == 100
    assert report["miou"] >= 0.75
