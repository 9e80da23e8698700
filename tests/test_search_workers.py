"""Three separate `segkit search` processes on one study, standing in for three machines, on a real
PostgreSQL server (tests/postgres_server.py), a journal file and an SQLite file. The first of them to
start a trial is SIGKILLed in the middle of it. The study is then read back with Optuna's own storage
classes, without segkit: it holds exactly its budget of counted trials, all finished, with no
architecture trained twice; the killed trial is FAIL and a copy of it (same parameters) ran on a surviving
process; best.yaml names the best complete trial. Also: the storage errors a person meets (wrong
password, no server, no database, no driver) are one line each."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import yaml
from postgres_server import PostgresServer

from segkit.cli import main
from segkit.data import make_shapes

TIMEOUT = 600
BUDGET = 3

SEARCH = """
data: {{dataset: shapes, root: {root}, crop_size: 32, base_size: 32, scale_range: [1.0, 1.0], batch_size: 4,
       eval_batch_size: 4}}
model:
  name: encdec
  options:
    base_channels: [2, 3]
    dropout: [0.0, 0.1]
    D_blocks: [[[[C, H, V, O], {{range: [1, 3]}}]], []]
    B_blocks: [[[[C, O], [1, 2]]]]
    U_blocks: [[], [[[C, O], 1]]]
optimizer: {{name: adamw, lr: 0.1}}
train: {{epochs: 1, device: cpu, keep_last_k: 0, print_table: false, limit_batches: 1}}
run: {{dir: {runs}}}
search: {{trials: {budget}, sampler: tpe, grace_epochs: 1, reduction_factor: 2, heartbeat: 2, retries: 2}}
"""


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("data") / "shapes", size=32, n_train=8, n_val=4, n_test=0)


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def bytecode_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pycache"))


def start_search(config: Path, storage: str, log: Path, cache: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": cache}
    command = [sys.executable, "-m", "segkit", "search", str(config), "--storage", storage,
               "--study", "shared"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)


def pump(index: int, process: subprocess.Popen, lines: queue.Queue) -> None:
    """Put each line the process prints on `lines` as (index, line), and (index, None) at its end."""
    for line in process.stdout:
        lines.put((index, line))
    lines.put((index, None))


def read_storage(kind: str, url: str):
    """The study's storage opened with Optuna's plain classes (no heartbeat, no segkit)."""
    if kind == "journal":
        path = url.removeprefix("journal:///")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    return optuna.storages.RDBStorage(url)


def key(trial) -> str:
    return json.dumps([trial.user_attrs["options"], trial.user_attrs["hyperparameters"]], sort_keys=True)


@pytest.mark.parametrize("kind", ["postgresql", "journal", "sqlite"])
def test_three_processes_split_the_budget_and_a_killed_one_is_replaced(kind, shapes_root, tmp_path,
                                                                       bytecode_cache, request):
    runs = tmp_path / "runs"
    config = tmp_path / "space.yaml"
    config.write_text(SEARCH.format(root=shapes_root, runs=runs, budget=BUDGET))
    url = {"postgresql": lambda: request.getfixturevalue("postgres").create_database("shared"),
           "journal": lambda: f"journal:///{tmp_path}/shared.journal",
           "sqlite": lambda: f"sqlite:///{tmp_path}/shared.db"}[kind]()

    processes = [start_search(config, url, tmp_path / f"search-{i}.log", bytecode_cache) for i in range(3)]
    lines, pumps = queue.Queue(), []
    for index, process in enumerate(processes):  # every process's output, line by line, as it comes
        pumps.append(threading.Thread(target=pump, args=(index, process, lines), daemon=True))
        pumps[-1].start()
    seen, victim, ended = {i: [] for i in range(3)}, None, 0
    while victim is None and ended < len(processes):  # kill the first process whose trial is running
        index, line = lines.get(timeout=TIMEOUT)
        if line is None:
            ended += 1
            continue
        seen[index].append(line)
        if line.startswith("trial ") and " started " in line:
            victim = processes[index]
            os.kill(victim.pid, signal.SIGKILL)
    assert victim is not None, f"no process started a trial: {seen}"
    assert victim.wait(timeout=TIMEOUT) == -signal.SIGKILL, seen
    survivors = [process for process in processes if process is not victim]
    for process in survivors:
        process.wait(timeout=TIMEOUT)
    for thread in pumps:
        thread.join(timeout=TIMEOUT)
    while not lines.empty():
        index, line = lines.get()
        if line is not None:
            seen[index].append(line)
    outputs = ["".join(seen[processes.index(process)]) for process in survivors]
    logs = "".join(log.read_text() for log in sorted(tmp_path.glob("search-*.log")))
    for process, output in zip(survivors, outputs, strict=True):
        assert process.returncode == 0, f"output: {output}\nstderr of the processes:\n{logs[-3000:]}"

    trials = optuna.load_study(study_name="shared", storage=read_storage(kind, url)).get_trials()
    killed = [t for t in trials if t.user_attrs.get("worker") == victim.pid]
    assert len(killed) == 1 and killed[0].state == optuna.trial.TrialState.FAIL
    copies = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(copies) == 1 and copies[0].params == killed[0].params
    assert copies[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert copies[0].user_attrs["worker"] in {p.pid for p in survivors}

    # Counted by hand: every trial but the killed one (its copy counts) and those recorded as not run.
    counted = [t for t in trials if t.number != killed[0].number and "not_run" not in t.user_attrs]
    assert len(counted) == BUDGET
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in counted)
    assert len({key(t) for t in counted}) == BUDGET  # no architecture trained twice
    for trial in counted:  # each trained in its own folder, with the architecture it recorded
        saved = yaml.safe_load((runs / "shared" / f"trial-{trial.number:04d}" / "config.yaml").read_text())
        assert saved["model"]["options"] == trial.user_attrs["options"]
    for trial in trials:  # a proposal the study already held was recorded, never trained
        if "not_run" in trial.user_attrs:
            assert not (runs / "shared" / f"trial-{trial.number:04d}").exists()

    best = max((t for t in counted if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    written = yaml.safe_load((runs / "shared" / "best.yaml").read_text())
    assert written["model"]["options"] == best.user_attrs["options"]
    assert any(f"best: trial {best.number}, val mIoU {best.value:.4f}" in output for output in outputs)


def test_storage_problems_are_one_line_each(shapes_root, tmp_path, postgres, capsys, monkeypatch):
    config = tmp_path / "space.yaml"
    config.write_text(SEARCH.format(root=shapes_root, runs=tmp_path / "runs", budget=1))
    postgres.create_database("errors")

    def search_error(url: str) -> str:
        assert main(["search", str(config), "--storage", url, "--study", "e"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("segkit: error: storage postgresql://segkit:***@")
        assert postgres.password not in err and "not-the-password" not in err
        return err

    assert 'password authentication failed for user "segkit"' in search_error(
        postgres.url("errors", password="not-the-password"))
    assert 'database "nope" does not exist' in search_error(postgres.url("nope"))
    closed = postgres.url("errors").replace(f":{postgres.port}/", f":{postgres.port + 1}/")
    assert "Connection refused" in search_error(closed)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the postgres extra were not installed
    assert "the psycopg 3 driver: uv sync --extra postgres" in search_error(postgres.url("errors"))
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_a_killed_local_worker_is_replaced_and_its_parent_still_writes_best_yaml(shapes_root, tmp_path,
                                                                                 bytecode_cache):
    """`segkit search --workers 2`: one of the two worker processes is SIGKILLed mid-trial. The other
    runs the dead one's trial again, the study meets its budget, and the parent prints the table, writes
    best.yaml and says what happened, with exit status 0 (before: a RuntimeError traceback, no best.yaml)."""
    runs = tmp_path / "runs"
    config = tmp_path / "space.yaml"
    config.write_text(SEARCH.format(root=shapes_root, runs=runs, budget=BUDGET))
    url = f"journal:///{tmp_path}/local.journal"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPYCACHEPREFIX": bytecode_cache}
    command = [sys.executable, "-m", "segkit", "search", str(config), "--workers", "2", "--storage", url,
               "--study", "shared"]
    parent = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    for line in parent.stdout:
        seen.append(line)
        if " started in process " in line:
            victim = int(line.split(" started in process ")[1].split()[0])
            os.kill(victim, signal.SIGKILL)
            break
    rest, _ = parent.communicate(timeout=TIMEOUT)
    output = "".join(seen) + rest
    assert parent.returncode == 0, output
    assert f"note: worker process {victim} was killed by signal 9; the other workers finished the study's " \
           f"{BUDGET} trials" in output

    trials = optuna.load_study(study_name="shared", storage=read_storage("journal", url)).get_trials()
    killed = [t for t in trials if t.user_attrs.get("worker") == victim]
    assert len(killed) == 1 and killed[0].state == optuna.trial.TrialState.FAIL
    counted = [t for t in trials if t.number != killed[0].number and "not_run" not in t.user_attrs]
    assert len(counted) == BUDGET and all(t.state.is_finished() for t in counted)
    best = max((t for t in counted if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert yaml.safe_load((runs / "shared" / "best.yaml").read_text())["model"]["options"] == \
        best.user_attrs["options"]
