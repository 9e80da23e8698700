"""The Trainer keeps only good checkpoints, tried the hard way: a diverging run (learning rate 1e6), a
checkpoint truncated in place, a flipped byte inside a weight, a second training into a folder in use
(a real process, then SIGKILLed), and a really full disk (a small tmpfs mounted for the test)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from trainer_script import NUM_CLASSES, ToyShapes

from segkit.errors import StopError
from segkit.trainer import NonFiniteLossError, Trainer, find_resume_checkpoint, load_checkpoint
from segkit.trainer.checkpoint import CheckpointDamaged, checkpoint_bytes
from segkit.trainer.lock import RunFolderLocked

SCRIPT = Path(__file__).with_name("trainer_script.py")


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, NUM_CLASSES, 1))


def trainer_for(run_dir, model=None, lr=0.05, **options) -> Trainer:
    model = model or bn_net()
    train = DataLoader(ToyShapes(8), batch_size=2, shuffle=True)
    val = DataLoader(ToyShapes(4, offset=100), batch_size=2)
    options = {"epochs": 2, "device": "cpu", "progress_bar": False, "print_table": False, "keep_last_k": 2,
               "tensorboard": False, **options}
    return Trainer(model, nn.CrossEntropyLoss(ignore_index=255), torch.optim.SGD(model.parameters(), lr=lr),
                   train, val, num_classes=NUM_CLASSES, run_dir=run_dir, **options)


def non_finite(path: Path) -> list[str]:
    """Names of the model tensors of a checkpoint that hold NaN or inf (read with torch.load itself)."""
    state = torch.load(path, weights_only=True)["model"]
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def test_a_diverging_run_never_writes_a_poisoned_checkpoint_and_names_the_good_one(tmp_path):
    run = tmp_path / "run"
    trainer = trainer_for(run, lr=1e6, checkpoint_every_steps=1, epochs=3)
    with pytest.raises(NonFiniteLossError) as stopped:
        trainer.fit()
    message = str(stopped.value)
    written = sorted(run.glob("*.pt"))
    assert written, "the first steps are still finite and are saved"
    for path in written:  # every checkpoint on disk is finite, parameters and buffers alike
        assert non_finite(path) == [], path.name
    good = load_checkpoint(run / "last.pt")
    assert f"the last good checkpoint {run / 'last.pt'} (step {good['step']}) is kept" in message
    # The model in memory did go bad (or the loss did): the stop was needed.
    bad = [k for k, v in trainer.model.state_dict().items()
           if v.is_floating_point() and not v.isfinite().all()]
    assert bad or "the loss is nan" in message or "the loss is inf" in message


def test_history_checkpoints_are_independent_files(tmp_path):
    run = tmp_path / "run"
    trainer = trainer_for(run, epochs=2)
    trainer.fit()
    history = sorted(p.name for p in run.glob("step-*.pt"))
    assert history == ["step-00000004.pt", "step-00000008.pt"]
    assert not (run / "last.pt").samefile(run / "step-00000008.pt")
    with open(run / "last.pt", "r+b") as f:  # damage in place, as a disk or a bad copy would
        f.truncate(100)
    path, state = find_resume_checkpoint(run)
    assert path.name == "step-00000008.pt" and state["step"] == 8
    for name, tensor in trainer.model.state_dict().items():  # the weights the run ended with
        assert torch.equal(state["model"][name], tensor), name


def test_a_flipped_byte_inside_a_weight_is_refused_naming_the_file(tmp_path):
    run = tmp_path / "run"
    trainer_for(run, epochs=2).fit()
    last = run / "last.pt"
    original = torch.load(last, weights_only=True)
    weight = original["model"]["0.weight"].numpy().tobytes()  # stored as is, inside the zip file
    data = bytearray(last.read_bytes())
    offset = data.find(weight)
    assert offset > 0 and data.find(weight, offset + 1) == -1
    data[offset + len(weight) // 2] ^= 0x10  # one bit of one float of the first conv's weight
    last.write_bytes(bytes(data))
    flipped = torch.load(last, weights_only=True)  # torch itself loads it without a word...
    changed = [k for k, v in flipped["model"].items() if not torch.equal(v, original["model"][k])]
    assert len(changed) == 1
    with pytest.raises(CheckpointDamaged, match=f"checkpoint {last} is damaged: its contents do not match"):
        load_checkpoint(last)  # ...segkit refuses it
    path, state = find_resume_checkpoint(run)  # and resuming falls back to the history file
    assert path.name == "step-00000008.pt" and torch.equal(state["model"][changed[0]],
                                                           original["model"][changed[0]])


def start_script(run_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def test_a_second_training_into_a_folder_in_use_is_refused_and_a_killed_ones_lock_is_taken_over(
        tmp_path, capsys):
    run = tmp_path / "run"
    first = start_script(run, "--pause-after-step", "3")  # trains 3 steps, then waits to be killed
    for line in first.stdout:
        if line.strip() == "STEP 3":
            break
    second = trainer_for(run, resume=True)
    with pytest.raises(RunFolderLocked) as refused:
        second.fit()
    assert f"run folder {run} is in use by pid {first.pid} on " in str(refused.value)
    assert "trainer_script.py" in str(refused.value)  # the holder's command
    assert second.step == 0 and load_checkpoint(run / "last.pt")["step"] == 2  # nothing of it was written

    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=60) == -signal.SIGKILL
    # The run resumes in a new process, which takes the dead process's lock over.
    again = start_script(run, "--resume")
    output, _ = again.communicate(timeout=240)
    assert again.returncode == 0 and output.rstrip().endswith("DONE"), output
    assert "ended without releasing it (killed?)" in output and f"pid {first.pid} on " in output
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3"]  # each epoch once
    assert not (run / ".lock").exists()  # released at the end


TMPFS_SIZE = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a file system that really fills up (root only)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    name = f"segkit-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", name, str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Write a file that leaves `leave` bytes free on folder's file system."""
    (folder / "filler").unlink(missing_ok=True)
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_a_full_disk_stops_with_one_line_and_keeps_the_previous_checkpoint(small_disk, capsys, monkeypatch):
    run = small_disk / "run"
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, NUM_CLASSES, 1))  # ~2,000 weights: checkpoints of ~30 kB
    trainer = trainer_for(run, model=wide, epochs=1, keep_last_k=0)
    trainer.fit()
    kept = (run / "last.pt").read_bytes()
    needed = checkpoint_bytes(load_checkpoint(run / "last.pt"))
    fill(small_disk, leave=needed // 2)  # less room than one more checkpoint needs
    free = shutil.disk_usage(small_disk).free

    more = trainer_for(run, model=wide, epochs=2, keep_last_k=0, resume=True)
    with pytest.raises(StopError) as stopped:
        more.fit()
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith(f"disk full: writing {run / 'best.pt'} needs about ") or \
        message.startswith(f"disk full: writing {run / 'last.pt'} needs about ")
    numbers = re.search(r"needs about [^(]*\(([\d,]+) bytes\) and (?:[^(]*\()?([\d,]+) bytes\)? are free",
                        message)
    said_needed, said_free = (int(n.replace(",", "")) for n in numbers.groups())
    assert said_needed == needed  # the same tensors as the checkpoint before
    assert said_free <= free < needed  # (the lock file and the log took a few pages meanwhile)
    assert f"the last good checkpoint {run / 'last.pt'} (step 4) is kept" in message
    assert (run / "last.pt").read_bytes() == kept  # untouched, and it still loads
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert not list(run.glob(".*.tmp"))  # no half-written file left behind

    # The write itself meeting the full disk (the size check let through): the same line.
    monkeypatch.setattr("segkit.trainer.checkpoint.checkpoint_bytes", lambda state: 1)
    fill(small_disk, leave=4096)
    with pytest.raises(StopError, match=r"^disk full: writing .* is kept\. Free some space"):
        trainer_for(run, model=wide, epochs=2, keep_last_k=0, resume=True).fit()
    assert (run / "last.pt").read_bytes() == kept and not list(run.glob(".*.tmp"))


def test_tensorboard_from_the_extra_logs_what_metrics_csv_logs(tmp_path):
    """segkit[tensorboard] installed (make test installs every extra): the real SummaryWriter's event files,
    read back with TensorBoard's own reader, hold each epoch's val/miou of metrics.csv and one train/loss
    per optimizer step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    trainer = trainer_for(run, epochs=2, tensorboard=True)
    trainer.fit()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    logged = [dict(zip(header, row.split(","), strict=True)) for row in rows[1:]]
    miou = events.Scalars("val/miou")
    assert [e.step for e in miou] == [int(row["step"]) for row in logged] == [4, 8]
    assert [e.value for e in miou] == pytest.approx([float(row["miou"]) for row in logged], rel=1e-6)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))
