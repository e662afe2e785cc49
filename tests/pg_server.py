"""A real PostgreSQL server for the tests, started from Debian's server binaries in a temporary folder.

Why not pytest-postgresql (installed): it runs initdb and pg_ctl as the current user and has no way
to run them as another, and CI runs as root, where both refuse to start. So this is the small part
of it we need: as root, the server runs as the `postgres` system user (Debian's package creates it)
through `runuser`, in a folder chowned to it. It listens on 127.0.0.1 on a free port (and on a unix
socket in its own folder), trusts local connections, and skips the durability it does not need for
throwaway data (fsync, full-page writes), which makes CREATE DATABASE fast enough to give every test
a fresh database.

    server = PostgresServer.start()      # raises PostgresUnavailable with a reason when it cannot
    url = server.create_database()       # postgresql://postgres@127.0.0.1:PORT/t_...
    server.drop_database(url)
    server.stop()                        # stops it and removes its folder, whatever state it is in
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import signal
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Optional


class PostgresUnavailable(Exception):
    """The server binaries (or the user to run them as) are not on this machine: the reason to skip."""


def server_bindir() -> Optional[Path]:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/N/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path, base: Path, port: int, run_as: Optional[str]):
        self.bindir, self.base, self.port, self.run_as = bindir, base, port, run_as
        self.data = base / "data"

    @classmethod
    def start(cls) -> "PostgresServer":
        bindir = server_bindir()
        if bindir is None:
            raise PostgresUnavailable("PostgreSQL's server binaries are not installed "
                                      "(apt-get install postgresql; .ci/run does it)")
        run_as = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as") \
                    from None
            run_as = "postgres"
        base = Path(tempfile.mkdtemp(prefix="mnist-pg-"))
        server = cls(bindir, base, _free_port(), run_as)
        try:
            if run_as:
                shutil.chown(base, user=run_as, group=run_as)
            server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions")
            options = (f"-p {server.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            server._run("pg_ctl", "-D", str(server.data), "-l", str(base / "server.log"), "-w", "-t", "60",
                        "-o", options, "start")
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.base)
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()[-2000:]}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = "t_" + secrets.token_hex(6)
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by create_database, whoever is still connected to it."""
        name = url.rsplit("/", 1)[1]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server (fast: the data is thrown away) and remove its folder."""
        pidfile = self.data / "postmaster.pid"
        try:
            if pidfile.exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        except Exception:  # pg_ctl could not stop it: the postmaster goes anyway, and the error is raised again
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
            raise
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
