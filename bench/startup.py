"""Benchmark: how long segkit's commands take to start, and which heavy libraries each one loads.

Every case runs in a fresh interpreter (`python -X importtime ...`), several times, alternating with the
reference `python -c "import torch"` measured in the same run. Printed per case: the median wall time, its
ratio to the reference (< 1: faster than importing torch alone), and which of torch, torchvision,
segmentation_models_pytorch, timm, scipy, nbformat and optuna the process imported (read from -X importtime,
so nothing in segkit is instrumented).

Run:  .venv/bin/python bench/startup.py [--rounds 5]

Cases: `segkit --help` and the help of every command group; `segkit train` with a mistyped key and with an
unknown model name (config errors: reported before torch); the scorer on a small competition
(`segkit competition score`, which needs torch for its confusion matrix but never torchvision or smp);
building the demo's UNet and an smp model (smp and timm load only for the second).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "segmentation_models_pytorch", "timm", "scipy", "nbformat", "optuna")
PYTHON = sys.executable


def imported_modules(stderr: str) -> set[str]:
    """Top-level names of the modules listed by -X importtime ('import time: self | cumulative | name')."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


def run_once(argv: list[str], cwd: Path) -> tuple[float, set[str], int]:
    start = time.perf_counter()
    done = subprocess.run([PYTHON, "-X", "importtime", *argv], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "SEGKIT_RUNS": str(cwd / "runs")})
    return time.perf_counter() - start, imported_modules(done.stderr), done.returncode


def make_competition(folder: Path) -> tuple[Path, Path]:
    """A small competition (shapes, 40 test images of 64 px) and the sample submission that goes with it."""
    code = ("from segkit.competition.prepare import prepare_competition\n"
            f"prepare_competition('shapes', {str(folder / 'comp')!r}, size=64, n_test=40)\n")
    subprocess.run([PYTHON, "-c", code], check=True, capture_output=True)
    return folder / "comp", folder / "comp" / "sample_submission.zip"


def cases(folder: Path) -> dict[str, list[str]]:
    comp, sample = make_competition(folder)
    return {
        "segkit --help": ["-m", "segkit", "--help"],
        "segkit train --help": ["-m", "segkit", "train", "--help"],
        "segkit search --help": ["-m", "segkit", "search", "--help"],
        "segkit competition --help": ["-m", "segkit", "competition", "--help"],
        "segkit student --help": ["-m", "segkit", "student", "--help"],
        "train: mistyped key": ["-m", "segkit", "train", "shapes_unet", "--set", "train.epoch=3"],
        "train: unknown model": ["-m", "segkit", "train", "shapes_unet", "--set", "model.name=unte"],
        "scorer (40 images)": ["-m", "segkit", "competition", "score", str(sample), "--team", "bench",
                               "--comp", str(comp)],
        "build the demo UNet": ["-c", "from segkit.models import build_model; build_model('unet', 21)"],
        "build an smp model": ["-c", "from segkit.models import build_model; "
                                     "build_model('smp_unet', 21, encoder_name='resnet18')"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of every case (median reported)")
    args = parser.parse_args()
    reference = ["-c", "import torch"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        all_cases = cases(folder)
        times = {name: [] for name in ["import torch", *all_cases]}
        loaded, codes = {}, {}
        for _ in range(args.rounds):  # alternate, so that a busy moment hits every case alike
            times["import torch"].append(run_once(reference, folder)[0])
            for name, argv in all_cases.items():
                seconds, modules, code = run_once(argv, folder)
                times[name].append(seconds)
                loaded[name], codes[name] = modules, code
    base = statistics.median(times["import torch"])
    print(f"{'case':<28} {'wall s':>7} {'/ import torch':>15}  exit  heavy libraries imported")
    print(f"{'import torch (reference)':<28} {base:>7.2f} {1.0:>15.2f}")
    for name in all_cases:
        median = statistics.median(times[name])
        heavy = ", ".join(m for m in HEAVY if m in loaded[name]) or "none"
        print(f"{name:<28} {median:>7.2f} {median / base:>15.2f}  {codes[name]:>4}  {heavy}")


if __name__ == "__main__":
    main()
