"""Trainer(resume=...) modes on real tiny runs: auto, strict, best, restart.

References are other runs of the same tiny training that were never rewound or archived (bitwise equal
weights and identical metrics.csv), the checkpoint files as they were on disk before (bytes), and
best.pt's own tensors.
"""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader
from trainer_script import ToyShapes

from segkit.cli.run import RESUME_MODES as CLI_RESUME_MODES
from segkit.cli.run import add_run_commands
from segkit.trainer import RESUME_MODES, Callback, Trainer, load_checkpoint

CE = nn.CrossEntropyLoss(ignore_index=255)



def unlearning_loss(output, target):
    """Minus the cross-entropy: gradient *ascent* on the labels, so the run gets worse."""
    return -CE(output, target)


class RecordStart(Callback):
    """Keeps copies of the model, optimizer and schedule as training starts (after any checkpoint load)."""

    def on_fit_start(self, trainer) -> None:
        self.step, self.epoch = trainer.step, trainer.epoch
        self.model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        self.optimizer = trainer.optimizer.state_dict()["state"]
        self.optimizer = {i: {k: v.clone() for k, v in s.items()} for i, s in self.optimizer.items()}
        self.scheduler = trainer.scheduler.state_dict()


def make_trainer(run_dir, epochs, resume=False, loss_fn=CE, val=True, batch_size=2, callbacks=()):
    """8 training images (4 steps per epoch, AdamW, a polynomial schedule, dropout, augmentation drawing
    from torch, random and numpy) and 4 validation images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(6, 3, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    train_loader = DataLoader(ToyShapes(8, augment=True), batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(ToyShapes(4, offset=100), batch_size=2) if val else None
    trainer = Trainer(model, loss_fn, optimizer, train_loader, val_loader, num_classes=3, run_dir=run_dir,
                      epochs=epochs, device="cpu", seed=3, resume=resume, progress_bar=False, keep_last_k=3,
                      print_table=False, callbacks=list(callbacks), config={"test": "resume modes"},
                      make_scheduler=lambda optimizer, _: torch.optim.lr_scheduler.PolynomialLR(
                          optimizer, total_iters=40, power=0.9))
    return trainer


def weights(run_dir, name="last.pt") -> dict:
    return load_checkpoint(run_dir / name)["model"]


def assert_equal_tensors(actual: dict, expected: dict, what: str) -> None:
    assert actual.keys() == expected.keys(), what
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{what}: {key}"


def snapshot(folder) -> dict:
    """relative path -> bytes of every file under `folder` (hidden ones too)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def archives(run_dir) -> list:
    return sorted((run_dir / "archive").iterdir()) if (run_dir / "archive").is_dir() else []


# ---------------------------------------------------------------------------------------- the option


def test_accepted_values_and_errors(tmp_path):
    assert RESUME_MODES == CLI_RESUME_MODES == ("auto", "strict", "best", "restart")
    for given, mode in [(False, None), (None, None), (True, "auto"), *[(m, m) for m in RESUME_MODES]]:
        assert make_trainer(tmp_path / "run", 1, resume=given).resume == mode
    for wrong in ["yes", "Best", 1, "last"]:
        with pytest.raises(ValueError, match=r"resume must be .*'auto', 'strict', 'best', 'restart'; got"):
            make_trainer(tmp_path / "run", 1, resume=wrong)


def test_cli_resume_flag():
    parser = argparse.ArgumentParser()
    add_run_commands(parser.add_subparsers())
    parse = parser.parse_args
    assert parse(["train", "shapes_unet"]).resume is None
    assert parse(["train", "shapes_unet", "--resume"]).resume == "auto"  # the Makefile's `make demo`
    assert parse(["train", "shapes_unet", "--resume", "--set", "train.epochs=2"]).resume == "auto"
    for mode in RESUME_MODES:
        assert parse(["train", "shapes_unet", "--resume", mode]).resume == mode
    with pytest.raises(SystemExit):
        parse(["train", "shapes_unet", "--resume", "latest"])


# ------------------------------------------------------------------------------------- auto, strict


@pytest.mark.parametrize("mode", [True, "auto", "strict"])
def test_auto_and_strict_continue_like_an_uninterrupted_run(tmp_path, mode):
    straight = make_trainer(tmp_path / "straight", 3)
    straight.fit()
    make_trainer(tmp_path / "stopped", 1).fit()
    resumed = make_trainer(tmp_path / "stopped", 3, resume=mode)
    resumed.fit()
    assert resumed.step == straight.step == 12
    assert_equal_tensors(resumed.model.state_dict(), straight.model.state_dict(), f"resume={mode!r}")
    log = "metrics.csv"
    assert (tmp_path / "stopped" / log).read_text() == (tmp_path / "straight" / log).read_text()


def test_auto_starts_a_run_that_has_no_checkpoint(tmp_path):
    fresh = make_trainer(tmp_path / "fresh", 1)
    fresh.fit()
    auto = make_trainer(tmp_path / "auto", 1, resume="auto")
    auto.fit()
    assert_equal_tensors(auto.model.state_dict(), fresh.model.state_dict(), "auto without checkpoint")


def test_strict_refuses_a_run_folder_without_checkpoint(tmp_path):
    missing = tmp_path / "typo"
    with pytest.raises(FileNotFoundError, match=rf"resume='strict'.*{missing}: it does not exist.*last.pt"):
        make_trainer(missing, 1, resume="strict").fit()
    assert not missing.exists()  # nothing was created
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"run folder .*empty: it is empty \(looked for last.pt and"):
        make_trainer(tmp_path / "empty", 1, resume="strict").fit()


# ---------------------------------------------------------------------------------------------- best


def test_best_rewinds_to_best_pt_and_continues_from_there(tmp_path):
    """A run whose epochs 5-6 made it worse, rewound to its best epoch and trained on properly, ends
    bitwise where a run trained straight through ends; nothing that was written is lost."""
    reference = tmp_path / "reference"
    make_trainer(reference, 6).fit()

    run = tmp_path / "run"  # epochs 1-4, then epochs 5-6 with a loss that spoils the model
    make_trainer(run, 4).fit()
    make_trainer(run, 6, resume="auto", loss_fn=unlearning_loss).fit()
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == 16 and load_checkpoint(run / "last.pt")["step"] == 24  # best: epoch 4
    miou = [float(line.split(",")[5]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert miou[4] <= miou[3] and miou[5] < miou[3]  # no better at epoch 5, worse at epoch 6
    before = snapshot(run)
    assert sorted(name for name in before if name.startswith("step-")) == [
        "step-00000016.pt", "step-00000020.pt", "step-00000024.pt"]

    start = RecordStart()
    rewound = make_trainer(run, 6, resume="best", callbacks=[start])
    rewound.fit()
    # it started from best.pt: weights, optimizer moments, schedule, position
    assert (start.step, start.epoch) == (best["step"], best["epoch"]) == (16, 3)
    assert_equal_tensors(start.model, best["model"], "weights at the start")
    for index, state in best["optimizer"]["state"].items():
        assert_equal_tensors(start.optimizer[index], state, f"AdamW state of parameter {index}")
    assert start.scheduler == best["scheduler"]
    # ... and went on exactly as the run that never went wrong; metrics.csv lost the bad epochs' rows
    assert rewound.step == 24
    assert_equal_tensors(rewound.model.state_dict(), weights(reference), "weights at the end")
    assert (run / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    # what came after best.pt is in the archive, byte for byte: last.pt, steps 20 and 24, the old log
    (archive,) = archives(run)
    assert sorted(p.name for p in archive.iterdir()) == [
        "config.yaml", "last.pt", "metrics.csv", "step-00000020.pt", "step-00000024.pt"]
    for path in archive.iterdir():
        assert path.read_bytes() == before[path.name], path.name
    # step 16 stayed (and was written again at the repeated end of epoch 4, with the same weights)
    assert_equal_tensors(weights(run, "step-00000016.pt"), weights(reference, "step-00000016.pt"), "step 16")


def test_best_is_refused_without_best_pt_or_with_another_data_order_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, 1, val=False).fit()  # no validation: no best.pt
    before = snapshot(run)
    with pytest.raises(FileNotFoundError, match=r"resume='best': run folder .*run has no best.pt"):
        make_trainer(run, 2, resume="best", val=False).fit()
    assert snapshot(run) == before

    other = tmp_path / "other"
    make_trainer(other, 1).fit()
    before = snapshot(other)
    with pytest.raises(ValueError, match="keep seed, batch size and process count"):
        make_trainer(other, 2, resume="best", batch_size=4).fit()
    assert snapshot(other) == before and not archives(other)


# ------------------------------------------------------------------------------------------- restart


def test_restart_archives_every_file_and_starts_fresh(tmp_path):
    run = tmp_path / "run"
    make_trainer(run, 2).fit()
    (run / "notes.txt").write_text("lr too high?\n")  # whatever else the folder holds goes along
    (run / ".last.pt.1234.abcd.tmp").write_bytes(b"half a checkpoint")  # even an interrupted write
    before = snapshot(run)
    last_inode = (run / "last.pt").stat().st_ino
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt"} <= set(before)

    restarted = make_trainer(run, 2, resume="restart")
    restarted.fit()
    fresh = make_trainer(tmp_path / "fresh", 2)
    fresh.fit()
    assert_equal_tensors(restarted.model.state_dict(), fresh.model.state_dict(), "restarted run")
    assert (run / "metrics.csv").read_text() == (tmp_path / "fresh" / "metrics.csv").read_text()
    (archive,) = archives(run)
    assert snapshot(archive) == before  # every old file, byte-identical, nothing else
    assert (archive / "last.pt").stat().st_ino == last_inode  # moved, not copied
    assert not (run / "notes.txt").exists()

    make_trainer(run, 1, resume="restart").fit()  # again: a second archive beside the first
    first, second = archives(run)
    assert first == archive and snapshot(first) == before
    assert "archive" not in {p.name for p in second.iterdir()}  # archives are not nested
    assert load_checkpoint(second / "last.pt")["step"] == 8 and load_checkpoint(run / "last.pt")["step"] == 4


def test_restart_of_a_missing_folder_just_starts(tmp_path):
    trainer = make_trainer(tmp_path / "new", 1, resume="restart")
    trainer.fit()
    assert not archives(tmp_path / "new") and trainer.step == 4
