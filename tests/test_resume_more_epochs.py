"""Resuming a run with more epochs: the schedule is stretched to the new length, the added epochs really
train, and the run folder keeps both configs.

The reference for the learning rates is the poly formula written out by hand, lr_t = base (1 - t/T)^0.9;
the reference for "really trains" is the weights after the first run.
"""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from segkit.optim import scheduler_factory
from segkit.trainer import Callback, Trainer, find_resume_checkpoint

BASE_LR = 0.1


class RecordRates(Callback):
    """The rate each optimizer step used, by step number."""

    def __init__(self):
        self.rates = {}

    def on_step_end(self, trainer):
        self.rates[trainer.step - 1] = trainer.lr


def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 8, 8, generator=generator)
    masks = torch.randint(0, 3, (8, 8, 8), generator=generator)
    return TensorDataset(images, masks)


def make_trainer(run_dir, epochs, resume, config=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=BASE_LR)
    recorder = RecordRates()
    trainer = Trainer(model, nn.CrossEntropyLoss(), optimizer, DataLoader(data(), batch_size=2, shuffle=True),
                      num_classes=3, run_dir=run_dir, epochs=epochs, device="cpu", resume=resume,
                      progress_bar=False, print_table=False, callbacks=[recorder],
                      config=config if config is not None else {"train": {"epochs": epochs}},
                      make_scheduler=scheduler_factory("poly", power=0.9))
    return trainer, recorder


def poly(t, total):
    return BASE_LR * (1 - t / total) ** 0.9


def test_resuming_with_more_epochs_stretches_the_schedule_and_trains(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first, first_rates = make_trainer(run_dir, epochs=1, resume=False)
    first.fit()
    assert first.total_steps == 4
    assert first_rates.rates == pytest.approx({t: poly(t, 4) for t in range(4)})
    after_first = copy.deepcopy(first.model.state_dict())

    more, rates = make_trainer(run_dir, epochs=3, resume="auto")
    more.fit()
    out = capsys.readouterr().out
    assert "the learning-rate schedule was made for 4 steps and this run has 12" in out
    assert "from last.pt: step 4, epoch 2/3" in out  # epochs counted from 1, as the progress bar does
    # Steps 4..11 follow the 12-step curve (without the stretch they would all use rate 0).
    assert rates.rates == pytest.approx({t: poly(t, 12) for t in range(4, 12)})
    changed = [not torch.equal(after_first[k], v) for k, v in more.model.state_dict().items()]
    assert all(changed)
    assert more.scheduler.total_steps == 12


def test_resuming_with_the_same_epochs_changes_nothing_in_the_schedule(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first, _ = make_trainer(run_dir, epochs=2, resume=False)
    first.fit()
    again, rates = make_trainer(run_dir, epochs=2, resume="auto")
    again.fit()
    out = capsys.readouterr().out
    assert "schedule was made for" not in out
    assert "from last.pt: step 8, all 2 epochs are done" in out
    assert rates.rates == {}  # nothing left to train
    assert again.scheduler.total_steps == 8


def test_a_changed_config_is_saved_and_the_previous_one_kept(tmp_path):
    run_dir = tmp_path / "run"
    make_trainer(run_dir, epochs=1, resume=False)[0].fit()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {"train": {"epochs": 1}}
    make_trainer(run_dir, epochs=2, resume="auto")[0].fit()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {"train": {"epochs": 2}}
    kept = run_dir / "config-until-step-00000004.yaml"
    assert yaml.safe_load(kept.read_text()) == {"train": {"epochs": 1}}
    # The same config again: nothing is renamed or rewritten.
    make_trainer(run_dir, epochs=2, resume="auto")[0].fit()
    assert sorted(p.name for p in run_dir.glob("config*.yaml")) == ["config-until-step-00000004.yaml",
                                                                    "config.yaml"]


def test_a_folder_with_only_best_pt_points_to_resume_best(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"there is none; it holds best.pt: resume='best'"):
        find_resume_checkpoint(tmp_path)
