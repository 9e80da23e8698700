"""Architecture search over an EncDec space with asynchronous successive halving (ASHA), through Optuna.

A search config is a training config (segkit.config) whose ``model.options`` is an EncDec search space
(segkit.search.space) plus a ``search`` section (SEARCH_SCHEMA below). Every trial samples an architecture,
trains it with the segkit Trainer (built by segkit.build.build_trainer, as `segkit train` does) and reports
the validation mIoU after every epoch. Optuna's SuccessiveHalvingPruner stops the weak ones early:

    rungs at epochs  r_k = grace_epochs · reduction_factor^k  (k = 0, 1, ...; below max_epochs)
    a trial that reaches r_k continues only if its mIoU there is in the top 1/reduction_factor of all values
    recorded at r_k so far (the first trials of a rung, with fewer than reduction_factor values, continue
    when they are the best so far)

"Asynchronous": a trial is judged as soon as it reaches a rung, against whatever the others have recorded,
so workers never wait for each other (Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning"; EncDecMeta used Ray Tune's ASHA with grace 3, reduction 3, best val mIoU). A trial's score is its
best validation mIoU over its epochs.

    search = load_search("search_encdec_shapes")       # config file or shipped name; checks everything
    study = run_search(search, trials=8, workers=2)    # prints one line per trial and the results table
    trial_results(study)                               # per trial: state, curve {epoch: mIoU}, params, ...

Failures. A trial that runs out of memory (torch.OutOfMemoryError, or the CPU allocator's "can't allocate
memory"), whose model has more than search.max_parameters parameters (counted on the meta device, before
anything is allocated), or whose loss becomes NaN, is marked FAIL with the reason in its user attribute
"failure", and the search goes on. FAIL rather than PRUNED: pruning means "trained and found weak", while
these trials say nothing about the architecture's quality; Optuna's samplers leave failed trials out.

Many processes, many machines. `search.trials` is the study's budget: every process that works on the study
(the local workers of `--workers K`, or `segkit search ... --storage URL --study NAME` started on several
machines) starts trials until the study holds that many counted trials, and waits while the last ones run
elsewhere, so a worker that dies is replaced (below). Running the command again continues the study up to
its budget (raise --trials to run more); it never trains an architecture the study already holds:

    - Samplers are seeded per trial, from (search.seed, trial number), and trial numbers are handed out by
      the storage, so processes never draw the same sequence; the study's proposals do not depend on which
      process ran which trial. TPE also counts the other processes' running trials (constant_liar).
    - A proposal equal to an earlier trial's architecture and hyperparameters is not trained: that trial
      is marked FAIL with the user attribute "not_run" and the sampler draws again in a new trial (after
      DUPLICATES_IN_A_ROW such draws in a row the space counts as exhausted and the process stops).
    - A trial that finds the budget already taken by the trials numbered before it is marked FAIL with
      "not_run" too, so processes racing for the last trial never overshoot the budget.
    - A worker killed mid-trial stops sending heartbeats (segkit.search.storage): after the grace period the
      next worker marks its trial FAIL and queues a copy with the same parameters, which runs next.
Counted trials: COMPLETE, PRUNED, FAIL (out of memory, too big, NaN), RUNNING and WAITING, except the
"not_run" ones and the killed trials that were queued again. `best.yaml` is written from whatever completed.

Storage (--storage; default a file in the search folder runs/<study>/, an existing one reused):
sqlite:///FILE.db (default for one worker), journal:///FILE.journal (default for several local workers),
postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (several machines; the segkit[postgres] extra). See
segkit.search.storage for what each is good for and how dead workers are noticed there.
"""

from __future__ import annotations

import copy
import gc
import json
import multiprocessing
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
import yaml

from segkit import paths
from segkit.build import build_dataset, build_trainer, model_from_config
from segkit.config import (
    SCHEMA,
    ConfigError,
    Field,
    apply_overrides,
    check_value,
    find_config,
    parse_override,
    read_yaml,
    validate_config,
)
from segkit.errors import StopError
from segkit.models import count_parameters
from segkit.models.encdec import describe_architecture
from segkit.search.space import (
    candidates,
    continuous_parameters,
    sample,
    sample_values,
    search_space_size,
    suggest,
    suggest_values,
    validate_space,
    value_problems,
)
from segkit.search.storage import hide_password, open_storage
from segkit.trainer import Callback, NonFiniteLossError

SEARCH_SCHEMA: dict[str, Field] = {
    "trials": Field(int, 20, "the study's budget: trials in total, over all its workers and runs", minimum=1),
    "workers": Field(int, 1, "local worker processes sharing the study", minimum=1),
    "sampler": Field(str, "tpe", "how architectures are proposed: tpe (learns from finished trials) or "
                     "random", choices=("tpe", "random")),
    "seed": Field(int, 0, "sampler seed (trial n draws with a seed made of seed and n)", minimum=0),
    "grace_epochs": Field(int, 1, "epochs before the first rung (ASHA's grace period)", minimum=1),
    "reduction_factor": Field(int, 3, "keep the top 1/reduction_factor at each rung", minimum=2),
    "max_epochs": Field(int, None, "epochs of a trial that is never pruned; null = train.epochs", minimum=1,
                        nullable=True),
    "max_parameters": Field(int, None, "trials with larger models fail without training; null = no limit",
                            minimum=1, nullable=True),
    "hyperparameters": Field(dict, {}, "other config keys to search, e.g. optimizer.lr: [0.001, 0.003]"),
    "storage": Field(str, None, "Optuna storage URL; null = a file in the search folder", nullable=True),
    "heartbeat": Field(int, 30, "seconds between a running trial's heartbeats; a trial silent for twice as "
                       "long is failed and queued again", minimum=1),
    "retries": Field(int, 2, "times a trial whose worker died is queued again", minimum=0),
    "study": Field(str, None, "study name (and search folder name); null = run.name or the file name",
                   nullable=True),
}


class TrialFailed(Exception):
    """A trial that could not be trained (too big, out of memory, non-finite loss): marked FAIL."""


class NotRun(Exception):
    """A trial that is not trained and not counted (same architecture as an earlier trial, or the budget
    was taken): marked FAIL with the user attribute "not_run" = the reason."""


DUPLICATES_IN_A_ROW = 20  # proposals of architectures already tried, in a row, before a worker gives up


@dataclass
class Search:
    """A checked search config. base: the config without `search` (model.options = the space);
    space: the EncDec search space; hyperparameters: {dotted config key: value spec}; settings: the
    `search` section with defaults; num_classes: from the training set."""

    base: dict
    space: dict
    hyperparameters: dict
    settings: dict
    num_classes: int
    source: str = "config"

    @property
    def study_name(self) -> str:
        return self.settings["study"]

    @property
    def folder(self) -> Path:
        """runs/<study>/ (run.dir or $SEGKIT_RUNS): trial folders, best.yaml and the default storage."""
        return paths.runs_root((self.base.get("run") or {}).get("dir")) / self.study_name

    @property
    def max_epochs(self) -> int:
        if self.settings["max_epochs"] is not None:
            return self.settings["max_epochs"]
        return validate_config(self.base_sample(), self.source)["train"]["epochs"]

    def base_sample(self) -> dict:
        """The base config with placeholder choices: only for reading its non-searched keys."""
        return self.fixed_config(sample(self.space, 0), sample_values(self.hyperparameters, 0))

    def fixed_config(self, options: dict, hyperparameters: dict, run_name: str | None = None,
                     run_dir: str | None = None) -> dict:
        """The raw config of one architecture: model.options = options, the hyperparameters set."""
        raw = copy.deepcopy(self.base)
        settings = {"model.options": copy.deepcopy(options), **hyperparameters}
        if self.settings["max_epochs"] is not None:
            settings["train.epochs"] = self.settings["max_epochs"]
        if run_name is not None:
            settings["run.name"] = run_name
        if run_dir is not None:
            settings["run.dir"] = run_dir
        for path, value in settings.items():
            node = raw
            *parents, last = path.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):  # absent or empty (None) in the YAML file
                    node[key] = {}
                node = node[key]
            node[last] = value
        return raw


def search_from_dict(raw: dict, source: str = "config", overrides=()) -> Search:
    """Check a search config given as a dict (Python ranges and tuples allowed) and return a Search.

    overrides: 'key.path=value' strings, 'search.trials=4' included. Every problem raises ConfigError with
    its key path: the search section, the space (model.options...), input sizes, the other sections.
    """
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"the top level must be a mapping of sections, got {raw!r}"])
    raw = dict(raw)
    section = raw.pop("search", None) or {}
    if not isinstance(section, dict):
        raise ConfigError(source, [f"search: expected a mapping of keys ({', '.join(SEARCH_SCHEMA)}), "
                                   f"got {section!r}"])
    section = dict(section)
    normal = []
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "search" and len(keys) == 2:
            section[keys[1]] = value
        else:
            normal.append(text)
    raw = apply_overrides(raw, normal) if normal else raw

    problems = []
    settings = {}
    for key in section:
        if key not in SEARCH_SCHEMA:
            problems.append(f"search.{key}: unknown key; search keys are {', '.join(SEARCH_SCHEMA)}")
    for key, field in SEARCH_SCHEMA.items():
        try:
            settings[key] = check_value(section[key], field) if key in section else copy.copy(field.default)
        except ValueError as error:
            problems.append(f"search.{key}: {error}")
    model = raw.get("model") or {}
    if model.get("name") != "encdec":
        problems.append(f"model.name: segkit search explores EncDec spaces; set it to 'encdec', got "
                        f"{model.get('name')!r}")
    for path, spec in dict(settings.get("hyperparameters") or {}).items():
        keys = str(path).split(".")
        field = SCHEMA.get(keys[0], {}).get(keys[1]) if len(keys) >= 2 else None
        if keys[0] == "model" or field is None or (len(keys) > 2 and field.kind is not dict):
            problems.append(f"search.hyperparameters.{path}: not a config key that can be searched "
                            "(section.key or section.options.name, outside model)")
        else:
            problems += value_problems(f"search.hyperparameters.{path}", spec)
    if problems:
        raise ConfigError(source, problems)
    space = model.get("options") or {}
    config_without_space = {**raw, "model": {**model, "options": {}}}
    crop_size = validate_config(config_without_space, source)["data"]["crop_size"]
    validate_space(space, {"data.crop_size": crop_size}, source=source, prefix="model.options.")
    if settings["study"] is None:
        run_name = (raw.get("run") or {}).get("name")
        settings["study"] = run_name or Path(source).stem or "search"
    search = Search(raw, space, settings["hyperparameters"], settings, num_classes=0, source=source)
    for path, spec in search.hyperparameters.items():  # every candidate value (range / uniform: the ends)
        for value in dict.fromkeys(candidates(spec)):
            try:
                validate_config(search.fixed_config(sample(space, 0), {path: value}), source)
            except ConfigError as error:
                problems += [f"search.hyperparameters.{path} = {value!r}: {p}" for p in error.problems]
    if problems:
        raise ConfigError(source, problems)
    config = validate_config(search.base_sample(), source)
    uncached = dict(config, data=dict(config["data"], cache=False))  # only the class names are needed here
    search.num_classes = len(build_dataset(uncached, config["data"]["train_split"], train=False,
                                           source=source).classes)
    return search


def load_search(name_or_path, overrides=()) -> Search:
    """Read a search config (a YAML file or the name of a shipped one) and check it (search_from_dict)."""
    path = find_config(name_or_path)
    return search_from_dict(read_yaml(path) or {}, source=str(path), overrides=overrides)


# ------------------------------------------------------------------------------------- one trial


class ReportToTrial(Callback):
    """After every epoch: trial.report(val mIoU, epoch), and stop with optuna.TrialPruned when the pruner
    says so (not after the last epoch: that trial is complete)."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.values: list[float] = []

    def on_epoch_end(self, trainer) -> None:
        epoch, miou = trainer.epoch + 1, float(trainer.val_metrics["miou"])
        self.values.append(miou)
        self.trial.report(miou, step=epoch)
        if epoch < trainer.epochs and self.trial.should_prune():
            raise optuna.TrialPruned(f"val mIoU {miou:.4f} after epoch {epoch} is below the rung's cut")


def parameter_count(config: dict, num_classes: int) -> int:
    """Parameters of the config's model, built on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        return count_parameters(model_from_config(config, num_classes=num_classes))


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's torch.OutOfMemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def objective(trial: optuna.Trial, search: Search, budget: int, started: list | None = None) -> float:
    """Sample, build, train and score one architecture; returns its best validation mIoU.

    Before training: NotRun when the trials numbered before this one already fill the `budget`, or when an
    earlier trial holds the same architecture and hyperparameters (see the module docstring). The trial's
    number is appended to `started` (run_worker's record of what this process runs)."""
    if started is not None:
        started.append(trial.number)
    trials = trial.study.get_trials(deepcopy=False)
    earlier = [t for t in counted_trials(trials) if t.number < trial.number]
    if len(earlier) >= budget:
        not_run(trial, f"the study's budget of {budget} trials was taken by the trials before it")
    options = suggest(search.space, trial)
    hyperparameters = suggest_values(search.hyperparameters, trial)
    trial.set_user_attr("options", options)
    trial.set_user_attr("hyperparameters", hyperparameters)
    trial.set_user_attr("architecture", summary(options, hyperparameters))
    trial.set_user_attr("worker", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    key = architecture_key(options, hyperparameters)
    for other in earlier:
        if "options" in other.user_attrs and architecture_key(
                other.user_attrs["options"], other.user_attrs.get("hyperparameters", {})) == key:
            not_run(trial, f"same architecture as trial {other.number}")
    this = next(t for t in trials if t.number == trial.number)
    retried = this.system_attrs.get("failed_trial")
    again = f" (again: the worker of trial {retried} stopped)" if retried is not None else ""
    print(f"trial {trial.number} started{again} in process {os.getpid()} on {socket.gethostname()}: "
          f"{summary(options, hyperparameters)}", flush=True)

    run_name = f"trial-{trial.number:04d}"
    config = validate_config(search.fixed_config(options, hyperparameters, run_name, str(search.folder)),
                             f"{search.source} ({run_name})")
    params = parameter_count(config, search.num_classes)
    trial.set_user_attr("params", params)
    limit = search.settings["max_parameters"]
    if limit is not None and params > limit:
        fail(trial, f"{params:,} parameters > search.max_parameters = {limit:,}")

    report = ReportToTrial(trial)
    failure, trainer = None, None
    try:
        config["train"].update(progress_bar=False, tensorboard=False)
        trainer = build_trainer(config, source=f"{search.source} ({run_name})", callbacks=[report])
        trainer.fit()
    except NonFiniteLossError as error:
        failure = f"non-finite loss: {str(error).splitlines()[0][:200]}"
    except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        failure = f"out of memory: {str(error).splitlines()[0][:200]}"
    del trainer  # the model and optimizer, before freeing cached memory
    if failure is not None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        fail(trial, failure)
    return max(report.values)


def architecture_key(options: dict, hyperparameters: dict) -> str:
    """One string per (architecture, hyperparameters), equal for equal choices (JSON: tuples are lists,
    as in the storage)."""
    return json.dumps([options, hyperparameters], sort_keys=True)


def not_run(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("not_run", reason)
    raise NotRun(reason)


def retried_numbers(trials) -> set[int]:
    """Numbers of the trials that were queued again after their worker stopped (each copy's system
    attribute "retry_history", set by RetryHeartbeatStaleTrialCallback, lists them)."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", [])}


def counted_trials(trials) -> list:
    """The trials that count against the budget: all but the "not_run" ones and the killed trials that
    were queued again (their copies count instead)."""
    again = retried_numbers(trials)
    return [t for t in trials if "not_run" not in t.user_attrs
            and not (t.state == optuna.trial.TrialState.FAIL and t.number in again)]


def fail(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("failure", reason)
    raise TrialFailed(reason)


def summary(options: dict, hyperparameters: dict) -> str:
    """'D: C1 / H2 | B: C2 | U: O / C1, c=8, dropout 0.12, optimizer.lr=0.003'."""
    text = describe_architecture(options["D_blocks"], options["B_blocks"], options["U_blocks"])
    text += f", c={options.get('base_channels', 16)}, dropout {options.get('dropout', 0.0):.2g}"
    return text + "".join(f", {k}={v:.3g}" if isinstance(v, float) else f", {k}={v}"
                          for k, v in hyperparameters.items())


# ---------------------------------------------------------------------------------- the whole search


def default_storage(search: Search, workers: int) -> str:
    """The study file in the search folder: an existing one, else SQLite (1 worker) or a journal file."""
    folder = search.folder.resolve()
    if (folder / "study.journal").is_file() or (workers > 1 and not (folder / "study.db").is_file()):
        return f"journal:///{folder / 'study.journal'}"
    return f"sqlite:///{folder / 'study.db'}"


def storage_for(search: Search, url: str):
    """The study's storage (segkit.search.storage.open_storage) with the search's heartbeat and retries."""
    return open_storage(url, heartbeat=search.settings["heartbeat"], retries=search.settings["retries"])


def trial_seed(seed: int, number: int) -> int:
    """A well-mixed 32-bit seed for trial `number` of a search seeded with `seed` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler made afresh for every trial by `make(seed)`, with seed = trial_seed(seed, trial number).

    The storage numbers trials once across all processes, so every process, on any machine, draws with
    its own seeds, and a study's proposals are the same whichever process ran which trial. The samplers
    used here keep no state between trials besides their random generator (TPE reads the study's
    finished and running trials each time), so a fresh one per trial loses nothing.
    """

    def __init__(self, make, seed: int):
        self.make = make
        self.seed = seed
        self.current = make(seed)

    def before_trial(self, study, trial) -> None:
        self.current = self.make(trial_seed(self.seed, trial.number))
        self.current.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.current.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.current.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.current.after_trial(study, trial, state, values)


def make_sampler(settings: dict) -> TrialSeededSampler:
    """TPE or random, seeded per trial (TrialSeededSampler). TPE's constant_liar counts running trials as
    bad, so workers running at the same time do not all explore the same region."""

    def make(seed: int) -> optuna.samplers.BaseSampler:
        if settings["sampler"] == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        with warnings.catch_warnings():  # constant_liar is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    return TrialSeededSampler(make, settings["seed"])


def make_pruner(settings: dict) -> optuna.pruners.SuccessiveHalvingPruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=settings["grace_epochs"],
                                                  reduction_factor=settings["reduction_factor"])


def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial (Optuna callback)."""
    if "not_run" in trial.user_attrs:
        print(f"trial {trial.number}: not run ({trial.user_attrs['not_run']})", flush=True)
        return
    values = trial.intermediate_values
    best = f"best val mIoU {max(values.values()):.4f}" if values else "not trained"
    reason = f" ({trial.user_attrs['failure']})" if "failure" in trial.user_attrs else ""
    print(f"trial {trial.number}: {trial.state.name.lower()}{reason} after {len(values)} epoch(s), {best}; "
          f"{trial.user_attrs.get('architecture', '')}", flush=True)


def fail_stale_trials(study: optuna.Study) -> None:
    """optuna.storages.fail_stale_trials: fail the running trials whose worker stopped sending heartbeats
    (their copies are queued by the storage's retry callback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_worker(search: Search, storage_url: str, budget: int, threads: int | None = None) -> None:
    """Work on the study until it holds `budget` finished counted trials (the target of each worker
    process, and what `segkit search` runs in its own process with one worker).

    Loop: fail the trials of dead workers; stop when the budget is met; run one trial when a slot is free
    or a trial is queued; otherwise wait a heartbeat (the last trials run elsewhere: they finish, or their
    worker dies and a copy is queued here). Stops early after DUPLICATES_IN_A_ROW proposals of
    architectures already tried."""
    if threads is not None:
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # `announce` prints each trial, failures included
    study = optuna.load_study(study_name=search.study_name, storage=storage_for(search, storage_url),
                              sampler=make_sampler(search.settings), pruner=make_pruner(search.settings))
    duplicates = 0
    finished_here: list[optuna.trial.FrozenTrial] = []
    started_here: list[int] = []
    while True:
        fail_stale_trials(study)
        trials = counted_trials(study.get_trials(deepcopy=False))
        states = [t.state for t in trials]
        finished = sum(s.is_finished() for s in states)
        waiting = states.count(optuna.trial.TrialState.WAITING)
        if finished >= budget:
            return
        if waiting == 0 and len(trials) >= budget:
            time.sleep(search.settings["heartbeat"])
            continue
        try:
            study.optimize(lambda trial: objective(trial, search, budget, started_here), n_trials=1,
                           catch=(TrialFailed, NotRun),
                           callbacks=[announce, lambda _, trial: finished_here.append(trial)])
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            # Another worker saw no heartbeat of this process's trial for the grace period (this process
            # was stalled) and failed it: its copy is queued and runs next. Anything else is an error.
            mine = started_here[-1] if started_here else None
            if mine is None or mine not in retried_numbers(study.get_trials(deepcopy=False)):
                raise
            print(f"trial {mine}: failed by another worker, which saw no heartbeat for "
                  f"{2 * search.settings['heartbeat']} s; a copy runs instead", flush=True)
            continue
        reason = finished_here[-1].user_attrs.get("not_run", "") if finished_here else ""
        duplicates = duplicates + 1 if reason.startswith("same architecture") else 0
        if duplicates >= DUPLICATES_IN_A_ROW:
            print(f"process {os.getpid()}: the last {duplicates} proposals were all architectures the study "
                  f"already holds; the search space looks exhausted, this worker stops", flush=True)
            return


def study_progress(study: optuna.Study) -> int:
    """Finished counted trials of the study."""
    return sum(t.state.is_finished() for t in counted_trials(study.get_trials(deepcopy=False)))


def run_search(search: Search, trials: int | None = None, workers: int | None = None,
               storage: str | None = None, study_name: str | None = None,
               write_best: bool = True) -> optuna.Study:
    """Run the search until the study holds `trials` counted trials (default search.trials), with `workers`
    local processes (default search.workers).

    With one worker the trials run in this process; with more, each worker is a new process (see
    worker_context) running run_worker on the shared storage. As with any multiprocessing, a script that
    calls this with workers > 1 must do so under ``if __name__ == "__main__":`` (notebooks need nothing).
    Other processes, here or on other machines, may work on the same study at the same time.
    Prints a line per trial, then the results table, and writes the best trial's fixed config to
    <search folder>/best.yaml (see write_best_config) when a trial completed, also when a worker died.
    Raises StopError when a local worker died and the study is short of its budget.
    """
    settings = search.settings
    if study_name is not None:
        search = Search(search.base, search.space, search.hyperparameters, {**settings, "study": study_name},
                        search.num_classes, search.source)
        settings = search.settings
    trials = settings["trials"] if trials is None else trials
    workers = settings["workers"] if workers is None else workers
    if trials < 1 or workers < 1:
        raise ValueError(f"trials and workers must be >= 1, got trials={trials}, workers={workers}")
    url = storage or settings["storage"] or default_storage(search, workers)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(storage=storage_for(search, url), study_name=search.study_name,
                                direction="maximize", load_if_exists=True, sampler=make_sampler(settings),
                                pruner=make_pruner(settings))
    size, others = search_space_size(search.space), search_space_size(search.hyperparameters)
    continuous = continuous_parameters(search.space) + continuous_parameters(search.hyperparameters)
    done = study_progress(study)
    print(f"search {search.study_name!r}: {size:,} architectures (~{size:.2g})"
          + (f" x {others:,} hyperparameter choices" if others > 1 else "")
          + (f", continuous: {', '.join(continuous)}" if continuous else "") + f"; budget {trials} trial(s), "
          f"{done} done; {workers} worker(s) here, ASHA rungs at epochs "
          f"{rung_epochs(settings, search.max_epochs)} of {search.max_epochs}; storage {hide_password(url)}; "
          f"trial folders in {search.folder}", flush=True)
    if done >= trials:
        print(f"the study already holds {done} finished trials, its budget is {trials}: nothing to run "
              "(raise --trials to run more)")

    broken = []
    if workers == 1:
        run_worker(search, url, trials)
    else:
        threads = max(1, torch.get_num_threads() // workers)
        context = worker_context()
        processes = [context.Process(target=run_worker, args=(search, url, trials, threads))
                     for _ in range(workers)]
        try:
            for process in processes:
                process.start()
            for process in processes:
                process.join()
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                    process.join()
        broken = [exit_description(p) for p in processes if p.exitcode]
    print(results_table(study))
    if write_best and any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials()):
        path = write_best_config(study, search)
        print(f"best: trial {study.best_trial.number}, val mIoU {study.best_value:.4f}; fixed config written "
              f"to {path}\nnext: segkit train {path}")
    sys.stdout.flush()
    if broken:
        done = study_progress(study)
        if done < trials:
            raise StopError(f"{'; '.join(broken)}; the study holds {done} of its {trials} trials: run the "
                            "same command again to continue it")
        print(f"note: {'; '.join(broken)}; the other workers finished the study's {trials} trials")
    return study


def exit_description(process) -> str:
    """'worker process 123 was killed by signal 9' or '... exited with status 1 (its error is above)'."""
    if process.exitcode < 0:
        return f"worker process {process.pid} was killed by signal {-process.exitcode}"
    return f"worker process {process.pid} exited with status {process.exitcode} (its error is printed above)"


def worker_context():
    """How worker processes start: from a fresh interpreter, never as a fork of this process (a fork
    inherits CUDA and OpenMP state that break in the child). "forkserver" imports segkit once in a server
    process and forks the workers from it, so they start at once; "spawn" (Windows, macOS default)
    imports it again in every worker."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segkit.search.asha"])
    return context


def rung_epochs(settings: dict, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: grace · factor^k below max_epochs."""
    epochs, rung = [], settings["grace_epochs"]
    while rung < max_epochs:
        epochs.append(rung)
        rung *= settings["reduction_factor"]
    return epochs


# -------------------------------------------------------------------------------------------- results


def trial_results(study: optuna.Study) -> list[dict]:
    """Per trial, in order: {"trial", "state" (COMPLETE/PRUNED/FAIL/RUNNING/WAITING), "best_miou" (None when
    not trained), "epochs", "params", "architecture", "curve" {epoch: val mIoU}, "options", "failure",
    "counted" (False for trials not run and killed trials queued again), "note" (why, or None)}.

    For plots: the curves of pruned trials end at a rung (rung_epochs), those of complete trials at
    max_epochs; failed trials have empty curves (a killed one: the epochs it reported before it died).
    """
    trials = study.get_trials(deepcopy=False)
    counted = {t.number for t in counted_trials(trials)}
    copies = {t.system_attrs["retry_history"][-1]: t.number for t in trials
              if t.system_attrs.get("retry_history")}
    rows = []
    for trial in trials:
        curve = dict(sorted(trial.intermediate_values.items()))
        note = trial.user_attrs.get("not_run")
        if note is not None:
            note = f"not run: {note}"
        elif trial.number in copies:
            note = f"its worker stopped; run again as trial {copies[trial.number]}"
        elif trial.state == optuna.trial.TrialState.FAIL and "failure" not in trial.user_attrs:
            note = "its worker stopped"
        rows.append({
            "trial": trial.number, "state": trial.state.name,
            "best_miou": max(curve.values()) if curve else None, "epochs": max(curve) if curve else 0,
            "params": trial.user_attrs.get("params"), "curve": curve,
            "architecture": trial.user_attrs.get("architecture", ""),
            "options": trial.user_attrs.get("options"), "failure": trial.user_attrs.get("failure"),
            "counted": trial.number in counted, "note": note,
        })
    return rows


def results_table(study: optuna.Study) -> str:
    """The trials as a text table: trial, state, best val mIoU, epochs, parameters, architecture, and in
    brackets a failure or why a trial does not count."""
    lines = [f"{'trial':>5}  {'state':<8}  {'best mIoU':>9}  {'epochs':>6}  {'params':>10}  architecture"]
    for row in trial_results(study):
        miou = f"{row['best_miou']:.4f}" if row["best_miou"] is not None else "-"
        params = f"{row['params']:,}" if row["params"] is not None else "-"
        text = row["architecture"] + "".join(f"  [{row[k]}]" for k in ("failure", "note") if row[k])
        number, state, epochs = row["trial"], row["state"], row["epochs"]
        lines.append(f"{number:>5}  {state:<8}  {miou:>9}  {epochs:>6}  {params:>10}  {text}")
    return "\n".join(lines)


def write_best_config(study: optuna.Study, search: Search, path: str | os.PathLike | None = None) -> Path:
    """Write the best complete trial as a plain training config (no open values) that `segkit train` takes.

    It is the search config without the search section, with model.options = the trial's architecture, its
    hyperparameters set, train.epochs = max epochs and run.name = '<study>-best'. Default path:
    <search folder>/best.yaml.
    """
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet: nothing to write")
    best = study.best_trial
    raw = search.fixed_config(best.user_attrs["options"], best.user_attrs["hyperparameters"],
                              run_name=f"{search.study_name}-best")
    raw.setdefault("train", {})["epochs"] = search.max_epochs
    validate_config(raw, f"best config of study {search.study_name}")
    path = Path(path) if path is not None else search.folder / "best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by segkit search: trial {best.number} of study {search.study_name!r}, "
              f"best val mIoU {best.value:.4f}, {best.user_attrs['params']:,} parameters.\n"
              f"# {best.user_attrs['architecture']}\n# Train it with: segkit train {path}\n")
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None))
    return path
