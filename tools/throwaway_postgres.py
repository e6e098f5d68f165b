"""A throwaway PostgreSQL cluster, pg_cron preloaded where it is installed, for the tests, the demo and
the benchmarks.

Any server's bin directory will do: PG_BINDIR names one (scripts/other_postgres installs other major
versions and prints theirs), else the newest under /usr/lib/postgresql. pg_cron is preloaded only when
that server has it (Debian's postgresql-<version>-cron): `preload_pg_cron` then says whether it is
loaded, `version` which server this is.

PostgreSQL refuses to run as root, and CI runs as root: when this process is root the server
runs as the unprivileged ``postgres`` OS user (override with PROXY_LEASES_PG_OS_USER), everything
else runs as whoever calls it. Clients connect over TCP on localhost with trust auth, which is
also how pg_cron's scheduler reaches the databases it runs jobs in.
"""

from __future__ import annotations

import functools
import glob
import os
import pwd
import re
import shutil
import signal
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
        bindir = os.environ["PG_BINDIR"]
        if not os.access(os.path.join(bindir, "postgres"), os.X_OK):
            raise RuntimeError(f"PG_BINDIR={bindir} holds no postgres server (scripts/other_postgres prints one)")
        return bindir
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


@functools.lru_cache(maxsize=None)
def _pg_config(bindir: str, flag: str) -> str | None:
    pg_config = os.path.join(bindir, "pg_config")
    if not os.access(pg_config, os.X_OK):
        return None
    try:
        return subprocess.run([pg_config, flag], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def library_dirs(bindir: str) -> list[str]:
    """Where that server loads its modules from: pg_config --pkglibdir, else where installs put it."""
    found = _pg_config(bindir, "--pkglibdir")
    prefix = os.path.dirname(os.path.normpath(bindir))
    dirs = [found] if found else [os.path.join(prefix, "lib", "postgresql"), os.path.join(prefix, "lib")]
    return [path for path in dirs if os.path.isdir(path)]


def extension_dirs(bindir: str) -> list[str]:
    found = _pg_config(bindir, "--sharedir")
    prefix = os.path.dirname(os.path.normpath(bindir))
    dirs = [found] if found else [os.path.join(prefix, "share", "postgresql"), os.path.join(prefix, "share")]
    return [os.path.join(path, "extension") for path in dirs if os.path.isdir(os.path.join(path, "extension"))]


def has_library(bindir: str, name: str) -> bool:
    """Whether that server can LOAD (or preload) `name`, e.g. pg_cron or auto_explain."""
    return any(os.path.isfile(os.path.join(path, f"{name}.so")) for path in library_dirs(bindir))


def has_extension(bindir: str, name: str) -> bool:
    """Whether that server can CREATE EXTENSION `name`: its module is there, and its control file where
    that server keeps them (when that can be told: without pg_config, the module alone decides)."""
    where = extension_dirs(bindir)
    return has_library(bindir, name) and (
        not where or any(os.path.isfile(os.path.join(path, f"{name}.control")) for path in where))


@functools.lru_cache(maxsize=None)
def server_version(bindir: str) -> tuple[int, int]:
    """(major, minor) of that server, from `postgres --version`, e.g. (16, 2); a beta's minor is 0."""
    out = subprocess.run([os.path.join(bindir, "postgres"), "--version"], check=True,
                         capture_output=True, text=True).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", out)
    if not match:
        raise RuntimeError(f"{bindir}/postgres --version said {out!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# For the other servers the tests start (PgBouncer, postgres_exporter), which refuse root or should not run as it.

def unprivileged_user() -> pwd.struct_passwd | None:
    """Who a server runs as when we are root (PROXY_LEASES_PG_OS_USER, default postgres); None when we are not."""
    return pwd.getpwnam(os.environ.get("PROXY_LEASES_PG_OS_USER", "postgres")) if os.geteuid() == 0 else None


def hand_over(user: pwd.struct_passwd | None, *paths: str) -> dict:
    """Give ``paths`` to ``user`` and return subprocess.Popen's arguments that run as that user ({} for None)."""
    if user is None:
        return {}
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM (PgBouncer's immediate shutdown, the exporter's exit), then SIGKILL after 10 s."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class ThrowawayPostgres:
    """``with ThrowawayPostgres() as pg: pg.url("mydb")`` — a private cluster, removed on exit."""

    host: str = "127.0.0.1"
    port: int = 0
    user: str = SUPERUSER
    # None: preload pg_cron when this server has it. True: it must (an error names what is missing).
    preload_pg_cron: bool | None = None
    # Extra server settings, e.g. ("fsync=on", "shared_buffers=2GB"); later ones win.
    settings: tuple[str, ...] = ()
    # The server's bin directory; empty: find_bindir().
    bindir: str = ""

    def __post_init__(self) -> None:
        self.bindir = self.bindir or find_bindir()
        self.pg_cron_installed = has_extension(self.bindir, "pg_cron")
        if self.preload_pg_cron is None:
            self.preload_pg_cron = self.pg_cron_installed
        elif self.preload_pg_cron and not self.pg_cron_installed:
            raise RuntimeError(f"pg_cron is not installed for the server in {self.bindir} "
                               f"(PostgreSQL {self.version_text}): install postgresql-<version>-cron, "
                               "or use a server that has it")
        self._chosen_port = bool(self.port)
        self.port = self.port or free_port()
        self.os_user = None
        if os.geteuid() == 0:
            self.os_user = os.environ.get("PROXY_LEASES_PG_OS_USER", "postgres")
            pwd.getpwnam(self.os_user)  # KeyError names a missing user plainly enough
        self.datadir = ""

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) of this server, e.g. (16, 2)."""
        return server_version(self.bindir)

    @property
    def major_version(self) -> int:
        return self.version[0]

    @property
    def version_text(self) -> str:
        return "%d.%d" % self.version

    def has_library(self, name: str) -> bool:
        """Whether this server has the module `name` (e.g. auto_explain) to LOAD."""
        return has_library(self.bindir, name)

    def _run(self, *argv: str) -> None:
        command = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        if self.os_user:
            command = ["runuser", "-u", self.os_user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # Where start() makes the server's directory (a subclass that copies another server names its own).
    workdir_prefix = "proxy-leases-pg-"

    def start(self) -> "ThrowawayPostgres":
        self.workdir = tempfile.mkdtemp(prefix=self.workdir_prefix)
        self.datadir = os.path.join(self.workdir, "data")
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
        try:
            self._make_datadir()
            # A port found free may be taken before the server binds it (several suites at once, as
            # scripts/test_versions runs them): then try another, unless the caller chose the port.
            attempts = 1 if self._chosen_port else 5
            for attempt in range(1, attempts + 1):
                if self._start_on(self.port):
                    break
                if attempt == attempts:
                    print(self.server_log())
                    raise RuntimeError(f"the server in {self.datadir} could not listen on port {self.port}")
                self.port = free_port()
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_datadir(self) -> None:
        """A new, empty cluster in self.datadir."""
        self._run("initdb", "-D", self.datadir, "-U", self.user, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")

    def _start_on(self, port: int) -> bool:
        """Start the server on `port`; False if it could not bind it on every localhost address."""
        log = os.path.join(self.workdir, "server.log")
        options = [
            f"-c port={port}",
            "-c listen_addresses=localhost",
            f"-c unix_socket_directories={self.workdir}",
            "-c fsync=off",
            "-c max_connections=200",
        ]
        if self.preload_pg_cron:
            options += ["-c shared_preload_libraries=pg_cron", f"-c cron.database_name={CRON_DATABASE}"]
        options += [f"-c {setting}" for setting in self.settings]
        try:
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir, "-l", log, "-o", " ".join(options))
        except subprocess.CalledProcessError:
            if "Address already in use" not in self.server_log() or self._chosen_port:
                print(self.server_log())
                raise
            return False
        # Listening on one of localhost's addresses only (another server has the port on the other)
        # would let clients of 127.0.0.1 reach someone else's server.
        if "Address already in use" in self.server_log():
            self._run("pg_ctl", "stop", "-m", "immediate", "-D", self.datadir)
            if self._chosen_port:
                print(self.server_log())
                raise RuntimeError(f"port {port} is taken on one of localhost's addresses")
            os.truncate(log, 0)
            return False
        return True

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

    def crash(self) -> None:
        """Kill the server the way a crash does: ``pg_ctl stop -m immediate`` ends every server process at
        once, with no shutdown checkpoint, and sessions lose their connections mid-statement. The data
        directory stays, for restart(). What fsync setting makes this a fair test: with the default
        fsync=off the WAL a commit wrote is still in the OS page cache after a process crash, so nothing
        committed is lost; only a machine losing power needs fsync=on (``settings=("fsync=on",)``)."""
        self._run("pg_ctl", "stop", "-m", "immediate", "-D", self.datadir)

    def restart(self) -> None:
        """Start the server again after crash() (or stop -m immediate by hand) on the same data directory and
        port, so that clients' URLs still hold: crash recovery replays the WAL, and this returns once the
        server accepts connections."""
        if not self._start_on(self.port):
            raise RuntimeError(f"port {self.port} was taken while the server in {self.datadir} was down")
        self._wait_until_accepting()

    def server_log(self) -> str:
        try:
            with open(os.path.join(self.workdir, "server.log"), encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.datadir and os.path.isdir(self.datadir):
            try:
                if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                    self._run("pg_ctl", "stop", "-m", "immediate", "-D", self.datadir)
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
