"""The successive-halving search (segkit.search.asha) on a tiny shapes set: pruning decisions recomputed from
the recorded curves with the ASHA rule, reported values against the Trainer's metrics.csv, failed trials
(forced out-of-memory and NaN loss, parameter budget) checked against independently built models, two
worker processes sharing one journal file, and `segkit search` -> best.yaml -> `segkit train`."""

from __future__ import annotations

import csv
import math
import os

import optuna
import pytest
import torch
import yaml

from segkit.build import model_from_config
from segkit.cli import main
from segkit.config import ConfigError, load_config
from segkit.data import make_shapes
from segkit.models import build_model
from segkit.search.asha import open_storage, run_search, search_from_dict, trial_results
from segkit.trainer import NonFiniteLossError, Trainer

FINISHED = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=8, n_val=4, n_test=0)


def tiny_search(root, runs, **search) -> dict:
    """A search config with Python ranges and tuples: 2 down blocks, 2-4 channels, 3 epochs of 1 batch."""
    return {
        "data": {"dataset": "shapes", "root": str(root), "crop_size": 32, "base_size": 32,
                 "scale_range": [1.0, 1.0], "batch_size": 4, "eval_batch_size": 4},
        "model": {"name": "encdec", "options": {
            "D_blocks": [[(["C", "H", "V", "O"], range(1, 3))], []],
            "B_blocks": [[(["C", "O"], [1, 2])]],
            "U_blocks": [[], [(["C", "O"], 1)]],
            "base_channels": [2, 3],
            "dropout": (0.0, 0.1),
        }},
        "optimizer": {"name": "adamw", "lr": 0.1},
        "train": {"epochs": 3, "device": "cpu", "keep_last_k": 0, "print_table": False, "limit_batches": 1},
        "run": {"dir": str(runs)},
        "search": {"trials": 6, "sampler": "random", "seed": 0, "grace_epochs": 1, "reduction_factor": 2,
                   "study": "tiny", **search},
    }


def asha_stops(trials, grace: int, factor: int, max_epochs: int) -> dict[int, int | None]:
    """The epoch at which successive halving stops each trial (None: it runs to the end), recomputed from
    the curves in trial order (one worker: trial n ends before trial n+1 starts).

    Rungs at grace·factor^k < max_epochs; a trial continues past a rung if its value there is at least the
    ceil-free top-1/factor cut of the values recorded at that rung so far, itself included (with fewer than
    `factor` values: if it is the best so far).
    """
    recorded: dict[int, list[float]] = {}
    stops = {}
    for trial in sorted(trials, key=lambda t: t.number):
        curve, rung, stops[trial.number] = trial.intermediate_values, grace, None
        while rung < max_epochs and rung in curve:
            recorded.setdefault(rung, []).append(curve[rung])
            ranked = sorted(recorded[rung], reverse=True)
            keep = max(len(ranked) // factor, 1)
            if curve[rung] < ranked[keep - 1]:
                stops[trial.number] = rung
                break
            rung *= factor
    return stops


def read_metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_successive_halving_stops_the_trials_the_rule_says(shapes_root, tmp_path):
    search = search_from_dict(tiny_search(shapes_root, tmp_path))
    study = run_search(search)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    stops = asha_stops(trials, grace=1, factor=2, max_epochs=3)
    for trial in trials:
        epochs = sorted(trial.intermediate_values)
        if stops[trial.number] is None:
            assert trial.state == optuna.trial.TrialState.COMPLETE and epochs == [1, 2, 3]
            assert trial.value == max(trial.intermediate_values.values())
        else:
            assert trial.state == optuna.trial.TrialState.PRUNED
            assert epochs == list(range(1, stops[trial.number] + 1))
        # Each reported value is the epoch's validation mIoU, as the Trainer's metrics.csv recorded it
        # (recomputed there as the mean of the per-class IoUs of the classes present).
        rows = read_metrics(tmp_path / "tiny" / f"trial-{trial.number:04d}")
        assert [int(r["epoch"]) for r in rows] == epochs
        for row in rows:
            ious = [float(v) for k, v in row.items() if k.startswith("iou_") and not math.isnan(float(v))]
            assert trial.intermediate_values[int(row["epoch"])] == pytest.approx(sum(ious) / len(ious))
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}

    results = trial_results(study)
    assert [(r["trial"], r["state"], r["epochs"]) for r in results] == \
        [(t.number, t.state.name, max(t.intermediate_values)) for t in trials]
    for row, trial in zip(results, trials, strict=True):
        assert row["curve"] == dict(sorted(trial.intermediate_values.items()))


def test_out_of_memory_too_big_and_nan_trials_fail_and_the_search_goes_on(shapes_root, tmp_path, monkeypatch):
    real_train_step = Trainer.train_step
    trained = []  # run folders of the trials that started training, in order

    def train_step_running_out_of_memory(self, batches):
        if self.run_dir.name not in trained:
            trained.append(self.run_dir.name)
        if len(trained) == 2 and self.run_dir.name == trained[1]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (forced by a test)")
        if len(trained) == 3 and self.run_dir.name == trained[2]:
            raise NonFiniteLossError("the loss is nan at step 0 (forced by a test)")
        return real_train_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", train_step_running_out_of_memory)
    limit = 1000  # base_channels 2 -> at most 881 parameters, 3 -> at least 1167 (21 classes)
    search = search_from_dict(tiny_search(shapes_root, tmp_path, trials=7, max_parameters=limit, seed=2,
                                          grace_epochs=3))  # seed 2: a mix of 2 and 3 base channels
    study = run_search(search)
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state in FINISHED for t in trials)
    for trial in trials:
        options = trial.user_attrs["options"]
        params = sum(p.numel() for p in build_model("encdec", num_classes=21, **options).parameters())
        assert trial.user_attrs["params"] == params
        failure = trial.user_attrs.get("failure", "")
        if params > limit:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert failure == f"{params:,} parameters > search.max_parameters = {limit:,}"
            assert not (tmp_path / "tiny" / f"trial-{trial.number:04d}").exists()  # never trained
        elif f"trial-{trial.number:04d}" == trained[1]:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert failure.startswith("out of memory: CUDA out of memory. Tried to allocate 2.00 GiB")
            assert trial.intermediate_values == {}
        elif f"trial-{trial.number:04d}" == trained[2]:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert failure == "non-finite loss: the loss is nan at step 0 (forced by a test)"
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE and failure == ""
            assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert any(t.user_attrs["params"] > limit for t in trials)
    out_of_memory = [t.number for t in trials if t.user_attrs.get("failure", "").startswith("out of memory")]
    assert len(out_of_memory) == 1
    later = [t for t in trials if t.number > out_of_memory[0] and t.state == optuna.trial.TrialState.COMPLETE]
    assert later  # the search went on after the failure


def test_two_worker_processes_record_every_trial_exactly_once(shapes_root, tmp_path, capsys):
    search = search_from_dict(tiny_search(shapes_root, tmp_path, trials=4, workers=2, max_epochs=2))
    run_search(search)
    journal = tmp_path / "tiny" / "study.journal"
    assert journal.is_file() and not (tmp_path / "tiny" / "study.db").exists()

    # Read the journal with Optuna's own classes, independently of the study object the search used.
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert len({t._trial_id for t in trials}) == 4
    assert all(t.state in FINISHED for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and os.getpid() not in workers
    for trial in trials:  # each trial trained once, in its own folder, with the architecture it recorded
        run_dir = tmp_path / "tiny" / f"trial-{trial.number:04d}"
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["model"]["options"] == trial.user_attrs["options"]
        assert [int(r["epoch"]) for r in read_metrics(run_dir)] == sorted(trial.intermediate_values)
    table = capsys.readouterr().out.split("trial  state")[1].splitlines()[1:5]
    assert sorted(int(line.split()[0]) for line in table) == [0, 1, 2, 3]


def test_storage_urls_are_checked():
    with pytest.raises(ValueError, match="storage 'redis://x': expected sqlite:///FILE.db, journal:///"):
        open_storage("redis://x")
    # the password is not shown
    with pytest.raises(ValueError, match=r"storage 'mysql://me:\*\*\*@host/db': expected"):
        open_storage("mysql://me:secret@host/db")


def test_a_journal_path_is_absolute_and_its_folder_is_made(tmp_path):
    storage = open_storage(f"journal:///{tmp_path}/a/b.journal")  # journal:/// + an absolute path
    assert isinstance(storage, optuna.storages.JournalStorage) and (tmp_path / "a").is_dir()


OPEN_AT_ONCE = """
import pathlib, sys, time
from segkit.search.storage import open_storage
url, ready, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
ready.touch()
while not go.exists():  # every process creates the tables of the fresh database at the same moment
    time.sleep(0.001)
print(len(open_storage(url).get_all_studies()))
"""


def test_processes_that_open_one_new_sqlite_file_at_once_all_get_the_storage(tmp_path):
    """Creating Optuna's tables races ("table ... already exists" for the losers); each loser must retry."""
    import subprocess
    import sys
    import time

    for round_ in range(3):
        url, go = f"sqlite:///{tmp_path}/shared-{round_}.db", tmp_path / f"go-{round_}"
        ready = [tmp_path / f"ready-{round_}-{i}" for i in range(6)]
        processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(flag), str(go)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for flag in ready]
        deadline = time.monotonic() + 120
        while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        answers = [process.communicate(timeout=120) for process in processes]
        codes = [(process.returncode, out) for process, (out, _) in zip(processes, answers, strict=True)]
        assert codes == [(0, "0\n")] * len(ready), [error[-500:] for _, error in answers]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {"trails": 3}}, "search.trails: unknown key"),
        ({"search": {"reduction_factor": 1}}, "search.reduction_factor: expected an integer >= 2, got 1"),
        ({"search": {"sampler": "grid"}}, "search.sampler: expected one of 'tpe', 'random'"),
        ({"search": {"hyperparameters": {"optimizer.lr": (0.1, 0.01)}}},
         "search.hyperparameters.optimizer.lr: uniform bounds must have low <= high"),
        ({"search": {"hyperparameters": {"optimizer.rl": [0.1]}}},
         "search.hyperparameters.optimizer.rl: not a config key that can be searched"),
        ({"search": {"hyperparameters": {"optimizer.lr": [0.1, -0.1]}}},
         "search.hyperparameters.optimizer.lr = -0.1: optimizer.lr: expected a number > 0, got -0.1"),
        ({"search": {"hyperparameters": {"data.batch_size": range(0, 4)}}},
         "search.hyperparameters.data.batch_size = 0: data.batch_size: expected an integer >= 1"),
        ({"search": "fast"}, "search: expected a mapping of keys (trials, workers"),
        ({"model": {"name": "unet", "options": {}}}, "model.name: segkit search explores EncDec spaces"),
        ({"data": {"crop_size": 30}}, "data.crop_size: 30 is not divisible by 2^2 = 4"),
        ({"model": {"name": "encdec", "options": {"D_blocks": [[("C", 1)]], "B_blocks": [[("C", 1)]],
                                                  "U_blocks": []}}},
         "model.options.U_blocks: expected as many upsampling blocks as D_blocks (1), got 0"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr: expected a number > 0"),
    ],
)
def test_bad_search_configs_name_the_key(shapes_root, tmp_path, change, message):
    raw = tiny_search(shapes_root, tmp_path)
    for section, values in change.items():
        raw[section] = values if section == "model" or not isinstance(values, dict) else \
            {**raw[section], **values}
    with pytest.raises(ConfigError) as error:
        search_from_dict(raw, source="space.yaml")
    assert message in str(error.value) and str(error.value).startswith("space.yaml:")


YAML_SEARCH = """
data: {{dataset: shapes, root: {root}, crop_size: 32, base_size: 32, scale_range: [1.0, 1.0], batch_size: 4,
       eval_batch_size: 4}}
model:
  name: encdec
  options:
    base_channels: {{range: [2, 4]}}
    dropout: {{uniform: [0.0, 0.1]}}
    D_blocks: [[[[C, H, V, O], {{range: [1, 3]}}]], []]
    B_blocks: [[[[C, O], [1, 2]]]]
    U_blocks: [[], [[[C, O], 1]]]
optimizer: {{name: adamw, lr: 0.1}}
train: {{epochs: 2, device: cpu, keep_last_k: 0, print_table: false, limit_batches: 1}}
run: {{dir: {runs}}}
search:
  trials: 5
  sampler: tpe
  grace_epochs: 1
  reduction_factor: 2
  hyperparameters:
    optimizer.weight_decay: [0.0, 0.001]
"""


def test_cli_search_prints_the_table_and_writes_a_config_that_train_accepts(shapes_root, tmp_path, capsys):
    config_path = tmp_path / "space.yaml"
    config_path.write_text(YAML_SEARCH.format(root=shapes_root, runs=tmp_path / "runs"))
    storage = f"sqlite:///{tmp_path}/cli.db"
    assert main(["search", str(config_path), "--trials", "3", "--study", "cli", "--storage", storage]) == 0
    out = capsys.readouterr().out

    study = optuna.load_study(study_name="cli", storage=storage)
    trials = study.get_trials()
    assert len(trials) == 3
    table = out[out.index("trial  state"):].splitlines()
    assert table[0].split() == ["trial", "state", "best", "mIoU", "epochs", "params", "architecture"]
    for line, trial in zip(table[1:4], trials, strict=True):
        fields = line.split()
        assert fields[:2] == [str(trial.number), trial.state.name]
        assert float(fields[2]) == pytest.approx(max(trial.intermediate_values.values()), abs=5e-5)
        assert int(fields[3]) == max(trial.intermediate_values)
        assert int(fields[4].replace(",", "")) == trial.user_attrs["params"]
        assert trial.user_attrs["architecture"] in line

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial
    assert best.value == max(t.value for t in complete) == max(best.intermediate_values.values())
    best_path = tmp_path / "runs" / "cli" / "best.yaml"
    assert f"fixed config written to {best_path}" in out
    config = load_config(best_path)  # segkit.config validates it: no open values left
    assert config["model"]["options"] == best.user_attrs["options"]
    assert config["optimizer"]["weight_decay"] == best.params["optimizer.weight_decay"]
    assert config["train"]["epochs"] == 2 and config["run"]["name"] == "cli-best"
    assert "search" not in yaml.safe_load(best_path.read_text())

    # The same architecture: the best trial's trained weights load into the model built from best.yaml.
    model = model_from_config(config, num_classes=21)
    weights = torch.load(tmp_path / "runs" / "cli" / f"trial-{best.number:04d}" / "last.pt",
                         weights_only=True)["model"]
    model.load_state_dict(weights, strict=True)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in weights.items()}

    assert main(["train", str(best_path), "--set", "train.epochs=1"]) == 0
    assert (tmp_path / "runs" / "cli-best" / "last.pt").is_file()


def test_running_again_continues_the_study_up_to_its_budget_and_trains_nothing_twice(shapes_root, tmp_path):
    """search.trials is the study's budget: a second run with a larger one adds exactly the missing trials,
    with architectures the study does not hold yet, and leaves the trained ones alone; a run whose budget is
    met trains nothing. (Before, every run restarted the sampler's sequence and re-trained trial 0's
    architecture, and --trials counted the trials of one run.)"""
    raw = tiny_search(shapes_root, tmp_path, trials=2, max_epochs=1)
    raw["model"]["options"]["dropout"] = [0.0]  # a discrete space (84 architectures): repeats are possible
    search = search_from_dict(raw)
    run_search(search, write_best=False)
    first = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "tiny").glob("trial-*/last.pt")}
    assert sorted(first) == ["trial-0000", "trial-0001"]
    study = run_search(search, trials=4, write_best=False)
    trials = study.get_trials()
    trained = [t for t in trials if "not_run" not in t.user_attrs]
    assert len(trained) == 4 and all(t.state.is_finished() for t in trained)
    keys = [yaml.safe_dump([t.user_attrs["options"], t.user_attrs["hyperparameters"]]) for t in trained]
    assert len(set(keys)) == 4  # four different architectures
    for trial in trials:  # a repeat proposal, if any, was recorded without training
        folder = tmp_path / "tiny" / f"trial-{trial.number:04d}"
        assert folder.is_dir() == ("not_run" not in trial.user_attrs)
    for name, mtime in first.items():  # trial 0 and 1 were not trained again
        assert (tmp_path / "tiny" / name / "last.pt").stat().st_mtime_ns == mtime
    again = run_search(search, trials=4, write_best=False)
    assert len(again.get_trials()) == len(trials)
    assert (tmp_path / "tiny" / "study.db").is_file()


def test_the_shipped_search_config_loads_and_its_space_has_the_size_by_hand(shapes_root):
    from segkit.search.asha import load_search, rung_epochs
    from segkit.search.space import continuous_parameters, search_space_size

    search = load_search("search_encdec_shapes", [f"data.root={shapes_root}"])
    assert search.study_name == "search_encdec_shapes" and search.num_classes == 21
    assert search.max_epochs == 6 and rung_epochs(search.settings, search.max_epochs) == [1, 3]
    # Per layer: 3 ops x its dilations + "O". Down and up layers {range: [1, 4]}: 3 * 3 + 1 = 10;
    # bottleneck {range: [1, 5]}: 3 * 4 + 1 = 13; last up layer {range: [1, 3]}: 3 * 2 + 1 = 7; 2 widths.
    assert search_space_size(search.space) == 10**3 * 13**2 * 10**2 * 7 * 2
    assert search_space_size(search.hyperparameters) == 3
    assert continuous_parameters(search.space) == ["dropout"]
    with pytest.raises(ConfigError, match=r"data.crop_size: 60 is not divisible by 2\^3 = 8"):
        load_search("search_encdec_shapes", [f"data.root={shapes_root}", "data.crop_size=60"])


def test_reading_a_cached_search_config_stores_nothing(shapes_root, tmp_path):
    """The classes are read from the train split when the search is set up: with data.cache on, that
    look must not store an evaluation-chain copy of the training images (trials build their own)."""
    raw = tiny_search(shapes_root, tmp_path)
    raw["data"].update(cache=True, cache_dir=str(tmp_path / "cache"))
    search = search_from_dict(raw)
    assert search.num_classes == 21
    assert not (tmp_path / "cache").exists()
