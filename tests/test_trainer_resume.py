"""The Trainer under real process deaths and under torchrun.

Each test starts tests/trainer_script.py as a subprocess: a tiny deterministic CPU run (15 steps, a
checkpoint every 2 steps, random augmentation drawing from torch, random and numpy, dropout, AdamW and
a polynomial schedule).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trainer_script
from trainer_script import NUM_CLASSES, ToyShapes, make_model

from segkit.trainer import load_checkpoint

SCRIPT = Path(__file__).with_name("trainer_script.py")
TIMEOUT = 240


@pytest.fixture(scope="module", autouse=True)
def bytecode_cache(tmp_path_factory):
    """Let the subprocesses share compiled bytecode: importing torch compiles thousands of modules when
    PYTHONDONTWRITEBYTECODE is set, which doubles the CPU time of every subprocess."""
    global BYTECODE_CACHE
    BYTECODE_CACHE = str(tmp_path_factory.mktemp("pycache"))
    yield


BYTECODE_CACHE = None


def start(run_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start the training script; its stderr goes to a .log file next to the run folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = BYTECODE_CACHE
    command = [sys.executable, str(SCRIPT), str(run_dir), *args]
    log = open(run_dir.parent / f"{run_dir.name}-{len(list(run_dir.parent.glob('*.log')))}.log", "w")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)


def wait_for_line(process: subprocess.Popen, wanted: str) -> list[str]:
    """Read the process's output until the line `wanted`; returns the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if line.strip() == wanted:
            return lines
    process.wait(timeout=TIMEOUT)
    raise AssertionError(f"the process ended (code {process.returncode}) before printing {wanted!r}: {lines}")


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=TIMEOUT) == -signal.SIGKILL


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, f"exit code {process.returncode}; see the .log files; output: {output}"
    assert output.rstrip().endswith("DONE")


def assert_identical_runs(resumed: Path, reference: Path, context: str) -> None:
    got, want = load_checkpoint(resumed / "last.pt"), load_checkpoint(reference / "last.pt")
    assert (got["epoch"], got["step"]) == (want["epoch"], want["step"]) == (3, 15)
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), f"{context}: weight {name} differs"
    for index, state in want["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(got["optimizer"]["state"][index][key], value), f"{context}: AdamW {key}"
    assert got["scheduler"] == want["scheduler"]
    # the per-epoch log is the same too (losses, learning rates, validation metrics), each epoch once
    assert (resumed / "metrics.csv").read_text() == (reference / "metrics.csv").read_text(), context


def test_sigkill_anywhere_then_resume_gives_bitwise_identical_weights(tmp_path):
    """Killed with SIGKILL after a random step, resumed, killed again in the middle of a checkpoint
    write, resumed again: the final weights equal those of a run that was never interrupted."""
    run = tmp_path / "run"
    kill_after = random.randint(2, 14)
    context = f"killed after step {kill_after}"
    process = start(run, "--pause-after-step", str(kill_after))  # waits there: the kill lands mid-run
    wait_for_line(process, f"STEP {kill_after}")
    kill(process)
    checkpoint = load_checkpoint(run / "last.pt")
    resumed_from = checkpoint["step"]
    assert resumed_from in (kill_after, kill_after - 1, kill_after - 2), context

    # Second death: in the middle of writing the next checkpoint (half the bytes are on disk).
    process = start(run, "--resume", "--hang-at-save", "1")
    lines = wait_for_line(process, "WRITING")
    kill(process)
    # The killed run's lock of the folder is noticed and taken over, then the run resumes.
    assert "ended without releasing it (killed?); its lock is taken over" in lines[0], context
    assert f"from last.pt: step {resumed_from}, epoch {checkpoint['epoch'] + 1}/" in lines[1], context
    steps = [line for line in lines if line.startswith("STEP")]  # none when it hung at an epoch end
    assert steps == [f"STEP {resumed_from + 1 + i}" for i in range(len(steps))], context  # continued
    partial = list(run.glob(".*.tmp"))  # .last.pt.<pid>.<random>.tmp (or .best.pt... at an epoch end)
    assert len(partial) == 1, context
    with pytest.raises(Exception):  # noqa: B017 - any unpickling error: the file is truncated
        torch.load(partial[0], weights_only=True)
    assert load_checkpoint(run / "last.pt")["step"] == resumed_from, context  # still the previous one

    process = start(run, "--resume")
    # Meanwhile, the uninterrupted reference run, in this process (same code, one thread, same results).
    threads = torch.get_num_threads()
    try:
        trainer_script.main([str(tmp_path / "reference")])
    finally:
        torch.set_num_threads(threads)
    finish(process)
    assert not list(run.glob("*.tmp")), "stale temporary files are cleaned up on resume"
    assert_identical_runs(run, tmp_path / "reference", context)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_report_the_metrics_of_a_single_process_evaluation(tmp_path):
    """torchrun, 2 CPU processes (gloo): both ranks report the confusion matrix of the whole val set
    (7 images, so a padding sampler would count one twice), equal to a one-process evaluation of the
    saved model computed here with a plain bincount."""
    run = tmp_path / "ddp"
    # The environment torchrun gives its workers (`torchrun --nproc_per_node 2 script.py` sets the same
    # variables); starting the two workers directly saves the launcher process.
    rendezvous = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    workers = [start(run, "--epochs", "2", "--dump-metrics", env={**rendezvous, "RANK": str(r),
                                                                   "LOCAL_RANK": str(r)}) for r in (0, 1)]
    for worker in workers:
        finish(worker)

    import json

    reports = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    checkpoint = load_checkpoint(run / "last.pt")
    assert len(checkpoint["rng"]) == 2  # the RNG states of both ranks
    assert checkpoint["step"] == 6  # 20 images / 2 ranks / batch 4 -> 3 steps per epoch

    model = make_model()
    model.load_state_dict(checkpoint["model"])
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        val = ToyShapes(7, offset=100)
        with torch.no_grad():
            pred = torch.stack([model(val[i][0][None])[0].argmax(0) for i in range(len(val))])
    finally:
        torch.set_num_threads(threads)
    masks = torch.stack([val[i][1] for i in range(len(val))])
    valid = masks != 255
    expected = torch.bincount(NUM_CLASSES * masks[valid] + pred[valid], minlength=NUM_CLASSES**2)
    expected = expected.reshape(NUM_CLASSES, NUM_CLASSES).tolist()
    assert sum(map(sum, expected)) == int(valid.sum())
    for report in reports:
        assert report["matrix"] == expected
    iou = [expected[c][c] / (sum(expected[c]) + sum(row[c] for row in expected) - expected[c][c])
           for c in range(NUM_CLASSES)]
    assert reports[0]["miou"] == pytest.approx(sum(iou) / NUM_CLASSES, abs=1e-12)
    assert len([c for c in range(NUM_CLASSES) if expected[c][c] > 0]) >= 2  # the model learned something
