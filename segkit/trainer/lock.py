"""One training at a time in a run folder: a lock that the operating system releases when its holder dies.

    lock = RunFolderLock(run_dir)
    stale = lock.acquire()    # RunFolderLocked naming the holder when another training holds it
    ...                        # train: checkpoints, metrics.csv, config.yaml
    lock.release()

The lock is `run_dir/.lock`, held with `fcntl.flock` (an exclusive, non-blocking lock on the open file)
for as long as the training runs. The file holds a line describing its holder (process id, machine, start
time, command), which a refused second training shows. The kernel drops a flock when its process ends,
however it ends, so a lock left by a killed training is never in the way: the next training takes it,
and `acquire` returns the old line ("stale") so the caller can say whose lock it took over. A clean
`release` deletes the file.

flock works between processes of one machine and, on most network file systems, between machines. On a
file system that refuses locks, and on Windows (no flock), training goes on without a lock (a warning says
so on such a file system).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from segkit.errors import StopError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunFolderLocked(StopError):
    """Another training is writing to this run folder."""


def holder_description() -> str:
    """'pid 1234 on host since 2025-01-31 12:00:00: segkit train shapes_unet'."""
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
            f"{command}")


class RunFolderLock:
    """The lock of one run folder (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns the description of a previous holder that died without releasing it
        (None when there was none). Raises RunFolderLocked when a live process holds it."""
        if fcntl is None:
            return None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunFolderLocked(
                    f"run folder {self.path.parent} is in use by {holder}; two trainings writing to one "
                    "folder would overwrite each other's checkpoints and logs: wait for it to end, or choose "
                    "another run folder (run.name)") from None
            except OSError as error:  # a file system without locks (some network file systems)
                os.close(fd)
                print(f"warning: cannot lock run folder {self.path.parent} ({error}); training without a "
                      "lock: make sure no other training writes to it")
                return None
            # The file may have been deleted by a holder's release between our open and our lock: then we
            # hold a lock on a file nobody else will open. Start again with the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder_description() + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return stale

    def release(self) -> None:
        """Delete the lock file and drop the lock (a no-op when not held)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
