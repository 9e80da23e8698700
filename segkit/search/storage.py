"""Where a study lives: a storage URL becomes an Optuna storage that notices workers that died.

    sqlite:///path/study.db         Optuna's RDBStorage on an SQLite file: one machine. Each write locks the
                                    whole file; a process that finds it locked waits (SQLITE_BUSY_SECONDS)
                                    instead of failing, which is plenty for trials that last minutes.
    journal:///path/study.journal   segkit's spelling (like sqlite:///, so journal:////abs/path is absolute)
                                    for Optuna's JournalStorage(JournalFileBackend(path)): an append-only log
                                    with a file lock, for processes on one machine or a shared file system.
    postgresql://user:password@host[:port]/database
                                    Optuna's RDBStorage on a PostgreSQL server: several machines. SQLAlchemy
                                    maps postgresql:// to the psycopg (version 3) driver, which the optional
                                    extra segkit[postgres] installs (`uv sync --extra postgres`).

Workers that die. Every storage is opened with a heartbeat. While a trial runs, Optuna's `study.optimize`
writes its heartbeat every `heartbeat` seconds from a thread of the worker. A RUNNING trial whose last
heartbeat is older than the grace period (2 x heartbeat, Optuna's default) belongs to a worker that was
killed or lost its machine: the next worker that starts a trial marks it FAIL
(`optuna.storages.fail_stale_trials`), and `RetryHeartbeatStaleTrialCallback(max_retry=retries)` queues a
copy of it, with the same parameters, as WAITING; the next free worker runs that copy first.

RDBStorage has this built in: one heartbeat row per running trial, compared with the database server's
clock. JournalStorage has no heartbeat in Optuna; `HeartbeatJournalStorage` adds one through the same
interface (optuna.storages._heartbeat.BaseHeartbeat, which Optuna's loop calls): the heartbeat is a trial
system attribute holding the writer's `time.time()`, so the machines that share a journal file must agree
on the time (one machine, or clocks kept by NTP).

Errors: a missing driver, a refused connection, a wrong password, a missing database... raise StorageError,
one line that names the URL (password hidden) and the cause.
"""

from __future__ import annotations

import random
import re
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

from segkit.errors import StopError

HEARTBEAT_ATTR = "segkit:heartbeat"
SQLITE_BUSY_SECONDS = 60
URL_FORMS = "sqlite:///FILE.db, journal:///FILE.journal or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"


class StorageError(StopError):
    """The study storage cannot be opened: no driver, no server, wrong password, no such database, ..."""


def hide_password(url: str) -> str:
    """'postgresql://me:secret@host/db' -> 'postgresql://me:***@host/db' (for messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with the heartbeat that its RDBStorage has (see the module docstring).

    heartbeat_interval: seconds between heartbeats of a running trial.
    grace_period: seconds without a heartbeat after which a running trial is stale (default 2 x interval).
    stale_trial_callback: called with (study, failed trial) for each trial failed as stale.
    """

    def __init__(self, backend, heartbeat_interval: int, grace_period: int | None = None,
                 stale_trial_callback=None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period if grace_period is not None else 2 * heartbeat_interval
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Running trials whose last sign of life, their last heartbeat or their start (a queued copy of a
        dead trial inherits the dead one's last heartbeat: its start is later), is older than the grace."""
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            signs = [trial.system_attrs.get(HEARTBEAT_ATTR)]
            if trial.datetime_start is not None:
                signs.append(trial.datetime_start.timestamp())
            signs = [sign for sign in signs if sign is not None]
            if signs and now - max(signs) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_trial_callback


def open_storage(url: str, heartbeat: int = 30, retries: int = 2):
    """An Optuna storage for `url` (see the module docstring), with a heartbeat every `heartbeat` seconds
    and stale trials re-queued up to `retries` times. Creates the parent folder of a local file.

    Raises ValueError for a URL of another form and StorageError when the storage cannot be opened.
    """
    with warnings.catch_warnings():  # the heartbeat and its callback are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
        if url.startswith("journal:///"):
            path = Path(url.removeprefix("journal:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(path))
            return HeartbeatJournalStorage(backend, heartbeat, stale_trial_callback=retry)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
            engine = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
            return rdb_storage(url, engine, heartbeat, retry)
        if url.split(":")[0].split("+")[0] == "postgresql":
            return rdb_storage(url, {}, heartbeat, retry)
    raise ValueError(f"storage {hide_password(url)!r}: expected {URL_FORMS}")


def rdb_storage(url: str, engine_kwargs: dict, heartbeat: int, retry) -> optuna.storages.RDBStorage:
    """optuna.storages.RDBStorage with a heartbeat; its errors as one-line StorageErrors.

    Processes that open a new database at the same moment may collide while creating Optuna's tables
    (a unique-constraint error from a server, "table ... already exists" from SQLite): the loser tries
    again, up to five times; the second time it finds the tables made and only reads them.
    """
    import sqlalchemy.exc

    shown = hide_password(url)
    attempts = 5
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                              heartbeat_stale_trial_callback=retry)
        except ImportError as error:  # the driver (psycopg) is not installed
            raise StorageError(
                f"storage {shown}: the database driver is missing ({error}); for postgresql:// install "
                "segkit's postgres extra, the psycopg 3 driver: uv sync --extra postgres") from None
        except sqlalchemy.exc.SQLAlchemyError as error:
            collided = isinstance(error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)) \
                or "already exists" in str(error)
            if collided and attempt < attempts - 1:
                time.sleep(0.5 + random.random())
                continue
            if collided:
                raise StorageError(f"storage {shown}: {one_line(error)}") from None
            raise StorageError(f"storage {shown}: cannot open it: {one_line(error)}") from None
    raise AssertionError("unreachable")


def one_line(error: Exception) -> str:
    """The driver's own message (not SQLAlchemy's wrapper and link), on one line."""
    original = getattr(error, "orig", None) or error
    text = str(original).split("\n(Background on this error")[0]
    return " ".join(text.split())
