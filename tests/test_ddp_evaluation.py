"""`torchrun --nproc_per_node 2 -m segkit train` on CPU (gloo) with a BatchNorm model (the UNet): the
validation mIoU the run logs, which also picks best.pt, is exactly the mIoU that a one-process
`segkit evaluate` of the saved checkpoint computes. DDP averages gradients but not BatchNorm running
statistics, so each process ends an epoch with its own; the Trainer evaluates rank 0's model, the one it
saves. Also: the run header states the global batch, and SyncBatchNorm on a CPU is refused with a reason."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from segkit.cli import main
from segkit.data import make_shapes

TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=16, n_val=8, n_test=0)


def settings(root, runs) -> list[str]:
    return [f"data.root={root}", "data.crop_size=32", "data.base_size=32", "data.batch_size=4",
            "data.eval_batch_size=2", "model.options.base_channels=4", "model.options.depth=2",
            "optimizer.lr=0.05", "train.epochs=3", "train.device=cpu", "train.print_table=false",
            "train.progress_bar=false", f"run.dir={runs}", "run.name=ddp"]


def test_ddp_logs_the_miou_of_the_model_it_saves(shapes_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "segkit", "train", "shapes_unet", "--set", *settings(shapes_root, runs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # 16 training images, 2 processes, 4 images each per batch: 2 steps per epoch
    assert "global batch 8 = 4 images per process x 2 processes x 1 accumulation step; 2 steps per epoch" \
        in done.stdout

    run = runs / "ddp"
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    best = max(rows, key=lambda row: float(row["miou"]))  # best.pt: the first epoch with the best mIoU
    assert main(["evaluate", str(run / "best.pt"), "--out", str(tmp_path / "best.json")]) == 0
    report = json.loads((tmp_path / "best.json").read_text())
    assert report["num_images"] == 8
    assert report["miou"] == float(best["miou"])  # exactly: the same confusion matrix
    # The loss sums the images' losses in another order (per shard): equal up to float rounding. A model
    # with other BatchNorm statistics (a rank's own) gives a loss that differs in the third digit.
    assert report["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-6, abs=0)
    for index, name in enumerate(report["classes"]):
        logged = best[f"iou_{name}"]
        assert (report["iou"][index] is None) == (logged == "nan"), name
        if report["iou"][index] is not None:
            assert report["iou"][index] == float(logged), name
    assert main(["evaluate", str(run / "last.pt"), "--out", str(tmp_path / "last.json")]) == 0
    last = json.loads((tmp_path / "last.json").read_text())
    assert last["miou"] == float(rows[-1]["miou"])
    assert last["loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=1e-6, abs=0)


def test_sync_batchnorm_on_a_cpu_is_refused_with_the_reason(shapes_root, tmp_path, capsys):
    assert main(["train", "shapes_unet", "--set", *settings(shapes_root, tmp_path),
                 "train.sync_batchnorm=true"]) == 2
    err = capsys.readouterr().err
    assert "train.sync_batchnorm: SyncBatchNorm needs CUDA devices (it synchronises through NCCL) and this " \
           "run's device is cpu" in err
    assert not (tmp_path / "ddp").exists()
