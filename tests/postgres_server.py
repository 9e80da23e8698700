"""A throwaway PostgreSQL server on 127.0.0.1 for tests: Debian's `postgresql` binaries, a new cluster.

    with PostgresServer() as server:
        server.url("study")          # postgresql://segkit:<password>@127.0.0.1:<port>/study (created)

PostgreSQL refuses to run as root, so as root the cluster belongs to the unprivileged user `postgres`
(created by Debian's package) and every server command runs as that user (runuser); anyone else runs it
as themselves. The cluster lives in a new folder under the system's temporary folder, listens only on
127.0.0.1 on a free port, has one password-protected superuser (scram-sha-256), fsync off; it is stopped
and deleted at the end. `make test` installs the package when it is missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "segkit"


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin (newest), or PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Start on __enter__, stop and delete on __exit__. `password`, `port` and `url(database)` for clients."""

    def __init__(self):
        self.bin = find_binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (initdb not found): `make test` installs "
                               "Debian's postgresql package, or run apt-get install postgresql")
        self.password = secrets.token_hex(8)
        self.port = free_port()
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="segkit-postgres-"))
        self.data = self.folder / "data"

    def run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.owner, "--"] if self.owner else []
        result = subprocess.run(prefix + list(command), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = (self.folder / "server.log")
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}{tail}")

    def __enter__(self) -> PostgresServer:
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self.owner:
            user = pwd.getpwnam(self.owner)
            for path in (self.folder, password_file):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={password_file}",
                 "--auth=scram-sha-256", "--no-sync", "--encoding=UTF8", "--locale=C")
        options = f"-k {self.folder} -h 127.0.0.1 -p {self.port} -F"
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                 str(self.folder / "server.log"), "-w", "-t", "60", "start")
        return self

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; returns its URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password,
                             dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str, password: str | None = None) -> str:
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def __exit__(self, *exc) -> None:
        try:
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
