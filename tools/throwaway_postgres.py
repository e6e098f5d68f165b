"""A throwaway PostgreSQL cluster with pg_cron preloaded, for the tests, the demo and the benchmarks.

PostgreSQL refuses to run as root, and CI runs as root: when this process is root the server
runs as the unprivileged ``postgres`` OS user (override with PROXY_LEASES_PG_OS_USER), everything
else runs as whoever calls it. Clients connect over TCP on localhost with trust auth, which is
also how pg_cron's scheduler reaches the databases it runs jobs in.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

# pg_cron lives in one database. It must be neither pytest-postgresql's template nor one of its
# clones: the janitor terminates their connections, and pg_cron's launcher exits for good.
CRON_DATABASE = "postgres"
SUPERUSER = "postgres"


def find_bindir() -> str:
    """The newest installed server's bin directory, or PG_BINDIR when it is set."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(path.split("/")[-3]),
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return os.path.dirname(os.path.realpath(on_path))
    raise RuntimeError("no PostgreSQL server found: install postgresql and postgresql-<version>-cron")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ThrowawayPostgres:
    """``with ThrowawayPostgres() as pg: pg.url("mydb")`` — a private cluster, removed on exit."""

    host: str = "127.0.0.1"
    port: int = 0
    user: str = SUPERUSER
    preload_pg_cron: bool = True
    # Extra server settings, e.g. ("fsync=on", "shared_buffers=2GB"); later ones win.
    settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.bindir = find_bindir()
        self.port = self.port or free_port()
        self.os_user = None
        if os.geteuid() == 0:
            self.os_user = os.environ.get("PROXY_LEASES_PG_OS_USER", "postgres")
            pwd.getpwnam(self.os_user)  # KeyError names a missing user plainly enough
        self.datadir = ""

    def _run(self, *argv: str) -> None:
        command = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        if self.os_user:
            command = ["runuser", "-u", self.os_user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "ThrowawayPostgres":
        self.workdir = tempfile.mkdtemp(prefix="proxy-leases-pg-")
        self.datadir = os.path.join(self.workdir, "data")
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", self.datadir, "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        options = [
            f"-c port={self.port}",
            "-c listen_addresses=localhost",
            f"-c unix_socket_directories={self.workdir}",
            "-c fsync=off",
            "-c max_connections=200",
        ]
        if self.preload_pg_cron:
            options += ["-c shared_preload_libraries=pg_cron", f"-c cron.database_name={CRON_DATABASE}"]
        options += [f"-c {setting}" for setting in self.settings]
        try:
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir,
                      "-l", os.path.join(self.workdir, "server.log"), "-o", " ".join(options))
        except subprocess.CalledProcessError:
            print(self.server_log())
            raise
        self._wait_until_accepting()
        return self

    def _wait_until_accepting(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def server_log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "server.log"), encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.datadir and os.path.isdir(self.datadir):
            try:
                self._run("pg_ctl", "stop", "-m", "immediate", "-D", self.datadir)
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
